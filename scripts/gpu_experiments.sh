#!/usr/bin/env bash
# One prepared call on a GPU machine: notebook 07's seg-augmentation grid, notebook 10's latent comparison
# at equal training FLOPs, and the zoo's 128 px latent diffusion model, side by side on one GPU, each
# under a time limit, so the whole call ends within TOTAL seconds.
#
#   scripts/gpu_experiments.sh TOTAL_SECONDS RESULTS_DIR
#
# Writes RESULTS_DIR/{seg-augmentation,latent-comparison,phantom128-ldm,export}/ and a log per job.
# PYTHON (default python3) runs the jobs from the repository root; the package need not be installed.
# Every job resumes: rerunning with the same RESULTS_DIR skips finished seg-augmentation groups and
# continues the latent model from its checkpoints and reads back the latent comparison's finished arms.
set -u
TOTAL=${1:?total seconds}
RESULTS=${2:?results folder}
PY=${PYTHON:-python3}
WORKERS=${SEG_WORKERS:-12}
SEG_PROFILE=${SEG_PROFILE:-full}; LATENT_PROFILE=${LATENT_PROFILE:-full}; LDM_CONFIG=${LDM_CONFIG:-configs/phantom128_ldm_gpu.yaml}
EVAL_N=${EVAL_N:-500}; LDM_TRAIN=$(grep -m1 num_images "$LDM_CONFIG" | tr -dc 0-9)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MEDDIFF_DEVICE=${MEDDIFF_DEVICE:-cuda}
mkdir -p "$RESULTS"
started=$(date +%s)
elapsed() { echo $(( $(date +%s) - started )); }

# 1. the zoo's latent model: stage 1 (autoencoder), then stage 2 (latent U-Net), export and evaluation
(
  $PY -m meddiff_lab.cli train-latent --config "$LDM_CONFIG" --out "$RESULTS/phantom128-ldm" \
      --stage autoencoder --resume
  touch "$RESULTS/phantom128-ldm/AUTOENCODER_DONE"
  $PY -m meddiff_lab.cli train-latent --config "$LDM_CONFIG" --out "$RESULTS/phantom128-ldm" \
      --resume --export "$RESULTS/export/phantom128-ldm.safetensors"
  cp "$RESULTS"/export/phantom128-ldm.safetensors "$RESULTS"/export/phantom128-ldm.json data/pretrained/
  $PY -m meddiff_lab.cli metrics evaluate --model phantom128-ldm --n "$EVAL_N" --steps 25 50 \
      --train "synthetic:$LDM_TRAIN" --out "$RESULTS/export/phantom128-ldm_evaluation.json" \
      --card "$RESULTS/export/phantom128-ldm_evaluation.md"
) > "$RESULTS/ldm.log" 2>&1 &
LDM=$!

# 2. notebook 07's full grid, 12 workers sharing the GPU; no new group after TOTAL - 120 s
$PY -m meddiff_lab.cli experiment seg-augmentation --profile "$SEG_PROFILE" --out "$RESULTS/seg-augmentation" \
    --workers "$WORKERS" --max-seconds $(( TOTAL - 120 )) > "$RESULTS/seg.log" 2>&1 &
SEG=$!

# 3. notebook 10's table, on the autoencoder shipped before this call (read once at its start)
$PY -m meddiff_lab.cli experiment latent-comparison --profile "$LATENT_PROFILE" --out "$RESULTS/latent-comparison" \
    --autoencoder "${LATENT_AUTOENCODER:-phantom128-ldm}" --threads 2 --max-seconds 200 > "$RESULTS/latent.log" 2>&1 &
LAT=$!

sleep 1
# watchdog: report every 30 s; at TOTAL seconds stop whatever still runs (finished work is on disk)
while [ "$(elapsed)" -lt "$TOTAL" ]; do
  running=0
  for pid in $LDM $SEG $LAT; do kill -0 "$pid" 2>/dev/null && running=$((running + 1)); done
  [ "$running" -eq 0 ] && break
  echo "[$(elapsed) s] $running job(s) running; $(ls "$RESULTS"/seg-augmentation/parts 2>/dev/null | wc -l) seg part file(s)"
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
  sleep 30
done
for pid in $LDM $SEG $LAT; do kill -0 "$pid" 2>/dev/null && { echo "stopping job $pid at $(elapsed) s"; pkill -P "$pid"; kill "$pid"; }; done
sleep 2
echo "done in $(elapsed) s"
