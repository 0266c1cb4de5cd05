# Two commands on a fresh machine:
#   make quickstart   # installs into .venv, then runs the README's main job
#   make test         # installs into .venv, then runs the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install quickstart test bench clean

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision first: pinned to the pair that works on CPU-only machines and with CUDA.
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[test]"
	# facenet-pytorch pins ancient torch/numpy: it works with ours, installed without its deps.
	$(PY) -m pip install -q --no-deps "facenet-pytorch==2.6.0"
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/mfer-sweep search_space=quickstart name=quickstart storage_path=sweeps

test: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/trainer_throughput.py
	$(PY) benchmarks/data_path.py --threads 1
	$(PY) benchmarks/sweep_overhead.py
	$(PY) benchmarks/paper_scale.py

clean:
	rm -rf $(VENV) runs sweeps reports exports
