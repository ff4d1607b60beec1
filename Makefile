# meddiff-lab: the two commands (`make course`, `make test`), then `make lab`, `make data`, `make bench`.
# Works offline and without a GPU. Re-running when already set up is quick and changes nothing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.meddiff-installed
TORCH  := torch==2.13.0
PROFILE ?= classroom
COURSE_OUT ?= build/course

.PHONY: setup course test lint lab data bench clean browser-setup test-browser binder-lock binder-sim zoo

setup: $(STAMP)

# torch first (a CPU wheel; anything else pulls GBs of CUDA), then the project with its extras, then the kernel.
# Versions are constrained to Binder's lock (binder/environment.yml), so the tests run what Binder installs.
$(STAMP): pyproject.toml binder/environment.yml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PYTHON) binder/lock.py constraints > $(VENV)/binder-constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(VENV)/binder-constraints.txt -e ".[lab,test,dist,browser,lint]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (meddiff-lab)" >/dev/null
	touch $(STAMP)

data: setup
	$(VENV)/bin/meddiff-lab data write --out data/synthetic_cxr

course: setup data
	$(VENV)/bin/meddiff-lab course run --profile $(PROFILE) --out $(COURSE_OUT)
	@echo "Course report: $(COURSE_OUT)/report.md (and report.html)"

test: setup browser-setup lint
	MEDDIFF_PROFILE=ci $(PY) -m pytest -q tests

# ruff (settings in pyproject.toml; notebooks/ruff.toml holds notebook code to 100 characters a line). The notebooks
# are linted but not formatted: the formatter's one-argument-a-line style would break the short-cell rule.
LINT_PATHS := meddiff_lab tests benchmarks scripts
lint: setup
	$(VENV)/bin/ruff check $(LINT_PATHS) notebooks
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

# The browser tests (tests/browser) drive Debian's Chromium with Playwright (never a downloaded browser).
# As root it is installed here; otherwise those tests fail with the command that installs it.
# make test runs Run All of 00-08 and every widget; make test-browser adds Run All of 09 and 10.
test-browser: setup browser-setup
	MEDDIFF_PROFILE=ci MEDDIFF_BROWSER_ALL=1 $(PY) -m pytest -q tests/browser

CHROMIUM ?= /usr/bin/chromium
browser-setup:
	@test -x $(CHROMIUM) || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Chromium for the browser tests: apt-get install -y chromium"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	else echo "WARNING: no $(CHROMIUM): the browser tests will fail; install it with: sudo apt-get install -y chromium"; fi; }

# Binder: pin every package of the tested environment (.venv) in binder/environment.yml ...
# (Not through setup, which installs within the current lock: a newer requirement must be able to get in.)
binder-lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[lab,test,dist,browser,lint]"
	$(PY) binder/lock.py write

# ... and prove it: a fresh environment from binder/ alone (postBuild included), the classroom course on ONE CPU
# under a 2 GB memory limit (a cgroup: needs root), each notebook's time and peak in build/binder-sim/report.md.
# BINDER_SIM_ARGS="--only 00_welcome" runs part of the course.
BINDER_SIM_ARGS ?=
binder-sim:
	$(PYTHON) binder/simulate.py $(BINDER_SIM_ARGS)

# LAB_ARGS passes options to JupyterLab, e.g. make lab LAB_ARGS="--no-browser --ip=0.0.0.0" in a container.
# As root (a Docker container), JupyterLab refuses to start without --allow-root, so it is added there.
LAB_ARGS ?=
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: setup data
	$(VENV)/bin/jupyter lab $(ROOT_ARGS) $(LAB_ARGS) notebooks/00_welcome.ipynb

# The model zoo: train (or resume, from runs/NAME/last.pt) every shipped 64 px model with the CLI and
# export its EMA weights to data/pretrained/. Hours on a CPU; on a GPU machine the same configs run
# there (the trainer picks CUDA and float16 itself). The ControlNets steer the exported phantom64, so
# it comes first. ZOO="phantom64-cond" trains one. Evaluate with meddiff-lab metrics evaluate --model NAME.
ZOO ?= phantom64 phantom64-cond phantom64-controlnet-mask phantom64-controlnet-edge
zoo: setup
	@for name in $(ZOO); do \
	  config=configs/pretrained_$$(echo $$name | tr - _).yaml; \
	  echo "== $$name ($$config)"; \
	  $(VENV)/bin/meddiff-lab train --config $$config --out runs/$$name --resume || exit $$?; \
	  $(VENV)/bin/meddiff-lab export --checkpoint runs/$$name/last.pt --out data/pretrained/$$name.safetensors --half || exit $$?; \
	done

bench: setup
	$(PY) benchmarks/unet_throughput.py

clean:
	rm -rf build .pytest_cache
