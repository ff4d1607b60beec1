# meddiff-lab: the two commands (`make course`, `make test`), then `make lab`, `make data`, `make bench`.
# Works offline and without a GPU. Re-running when already set up is quick and changes nothing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.meddiff-installed
TORCH  := torch==2.13.0
PROFILE ?= classroom
COURSE_OUT ?= build/course

.PHONY: setup course test lab data bench clean

setup: $(STAMP)

# torch first (a CPU wheel; anything else pulls GBs of CUDA), then the project with its extras, then the kernel.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[lab,test,dist]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (meddiff-lab)" >/dev/null
	touch $(STAMP)

data: setup
	$(VENV)/bin/meddiff-lab data write --out data/synthetic_cxr

course: setup data
	$(VENV)/bin/meddiff-lab course run --profile $(PROFILE) --out $(COURSE_OUT)
	@echo "Course report: $(COURSE_OUT)/report.md (and report.html)"

test: setup
	MEDDIFF_PROFILE=ci $(PY) -m pytest -q tests

# LAB_ARGS passes options to JupyterLab, e.g. make lab LAB_ARGS="--no-browser --ip=0.0.0.0" in a container.
# As root (a Docker container), JupyterLab refuses to start without --allow-root, so it is added there.
LAB_ARGS ?=
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: setup data
	$(VENV)/bin/jupyter lab $(ROOT_ARGS) $(LAB_ARGS) notebooks/00_welcome.ipynb

bench: setup
	$(PY) benchmarks/unet_throughput.py

clean:
	rm -rf build .pytest_cache
