#!/usr/bin/env bash
# Train several zoo models at once on one machine (a GPU shared by all of them, or many CPU cores),
# each for a wall-clock budget, then export their EMA weights.
#
#   scripts/zoo_parallel.sh SECONDS OUTDIR NAME [NAME ...]
#   e.g. scripts/zoo_parallel.sh 420 data/pretrained phantom64-cond phantom64-controlnet-mask
#
# NAME is a zoo entry; its recipe is configs/pretrained_NAME.yaml (dashes as underscores). Each job is
#   meddiff-lab train --config ... --out runs/NAME --resume --time-budget SECONDS
# (resumable: run the same command again after an interruption), then
#   meddiff-lab export --checkpoint runs/NAME/last.pt --out OUTDIR/NAME.safetensors --half.
# A job still running SECONDS + 120 s after the start is stopped; its last checkpoint is exported
# (and says how far it got). PYTHON names the interpreter (default: python3), CONFIGS the folder of
# recipes (default: configs).
set -u
if [ $# -lt 3 ]; then
  echo "usage: $0 SECONDS OUTDIR NAME [NAME ...]" >&2
  exit 2
fi
budget=$1; outdir=$2; shift 2
python=${PYTHON:-python3}
configs=${CONFIGS:-configs}
mkdir -p "$outdir" runs
pids=()
for name in "$@"; do
  config=$configs/pretrained_$(echo "$name" | tr - _).yaml
  if [ ! -f "$config" ]; then
    echo "$0: no recipe $config for zoo model $name" >&2
    exit 2
  fi
  echo "== $name: $config, budget $budget s, log runs/$name.log"
  mkdir -p "runs/$name"
  PYTHONUNBUFFERED=1 "$python" -m meddiff_lab.cli train --config "$config" --out "runs/$name" --resume \
    --time-budget "$budget" > "runs/$name.log" 2>&1 &
  pids+=($!)
done
deadline=$(( $(date +%s) + ${budget%.*} + 120 ))
for pid in "${pids[@]}"; do
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "job $pid passed its budget by 120 s: stopped (its last checkpoint is exported)" >&2
      kill "$pid"
      break
    fi
    sleep 2
  done
  wait "$pid" || echo "job $pid ended with status $?" >&2
done
status=0
for name in "$@"; do
  tail -n 3 "runs/$name.log"
  if [ -f "runs/$name/last.pt" ]; then
    "$python" -m meddiff_lab.cli export --checkpoint "runs/$name/last.pt" --out "$outdir/$name.safetensors" --half \
      || status=1
  else
    echo "$name: no checkpoint written" >&2
    status=1
  fi
done
exit $status
