# The two entry points: `make demo` and `make test`. Both build .venv from Python 3.10 when it is missing;
# `make test` also builds .venv-py311, the core (without Lava) on Python 3.11 with torch 2.13 and spikingjelly 2.0.
PYTHON ?= $(shell command -v pyenv >/dev/null 2>&1 && pyenv which python 2>/dev/null || command -v python3.10)
PYTHON311 ?= $(shell for p in $$(pyenv root 2>/dev/null)/versions/3.11*/bin/python3.11 $$(command -v python3.11); do \
	test -x "$$p" && echo "$$p" && break; done)
VENV := .venv
STAMP := $(VENV)/.installed
VENV311 := .venv-py311
STAMP311 := $(VENV311)/.installed

.PHONY: demo test test-slow test-all lint venv venv311 clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 10), "spikec needs Python 3.10 (lava-nc 0.10.0); got " + sys.version' \
		|| { echo "error: $(VENV) is not Python 3.10; remove it and rerun (or set PYTHON=/path/to/python3.10)"; exit 2; }
	@# -qq: errors still show; setuptools' editable install and this machine's pip config print notices on every run.
	$(VENV)/bin/python -m pip install -qq --upgrade pip
	$(VENV)/bin/python -m pip install -qq -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# The core on Python 3.11: torch 2.13.0 first (pip takes its CPU build from this machine's disk; an unpinned torch
# would pull a CUDA build), then spikec with the interop and test extras, then spikingjelly 2.0.0 without its
# declared dependencies (torchvision, torchaudio, tensorboard, ...: 5.8 GB of CUDA wheels its neurons and models do
# not import) and the four packages they do import.
$(STAMP311): pyproject.toml
	@test -n "$(PYTHON311)" || { echo "error: make test needs Python 3.11 (set PYTHON311=/path/to/python3.11)"; exit 2; }
	@test -x $(VENV311)/bin/python || $(PYTHON311) -m venv $(VENV311)
	$(VENV311)/bin/python -m pip install -qq --upgrade pip
	$(VENV311)/bin/python -m pip install -qq torch==2.13.0
	$(VENV311)/bin/python -m pip install -qq -e '.[interop,test]'
	$(VENV311)/bin/python -m pip install -qq --no-deps spikingjelly==2.0.0
	$(VENV311)/bin/python -m pip install -qq 'loguru>=0.7,<1' tqdm scipy packaging
	@touch $(STAMP311)

venv311: $(STAMP311)

# The digits Spikingformer end to end: check it is spike-driven; compile it for Loihi 2 (Lava processes,
# delays, resource report); run the digits test split on PyTorch and on the integer simulator; run the
# first 32 test images on Lava's bit-accurate CPU models and check every spike against intsim.
# Digits pixels are multiples of 1/16, so --input-exp 4 quantizes the input exactly.
DEMO_MODEL := examples/digits/checkpoints/spikingformer-cifar.pt
DEMO_OUT := out/digits-spikingformer

demo: $(STAMP)
	$(VENV)/bin/spikec verify --spike-driven $(DEMO_MODEL)
	$(VENV)/bin/spikec compile $(DEMO_MODEL) --input-exp 4 --target loihi2 -o $(DEMO_OUT)
	$(VENV)/bin/spikec simulate $(DEMO_MODEL) --input-exp 4 --backend torch,intsim
	$(VENV)/bin/spikec simulate $(DEMO_OUT) --backend lava --compare intsim --limit 32

# ruff (pyflakes, pycodestyle, complexity at most 12; pyproject.toml) and the test suite, which includes the
# import-layering contract (tests/test_layering.py).
lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Two suites: the full one on Python 3.10, where every optional package must be there (the portability checks
# against .venv-py311 included), then the core suite on Python 3.11 (quick tests of the frontend, IR, passes, intsim,
# verify, compile and report, and spikingjelly 2.0's own models), where the tests that need Lava, Ray or
# spikingjelly 0.0.0.0.x are skipped.
PYTEST310 = SPIKEC_TEST_REQUIRE=lava,ray,spikingjelly_legacy,py311 SPIKEC_TEST_PY311=$(CURDIR)/$(VENV311)/bin/python \
	$(VENV)/bin/python -m pytest -q
PYTEST311 = SPIKEC_TEST_REQUIRE=spikingjelly2 $(VENV311)/bin/python -m pytest -q

test: lint $(STAMP311)
	$(PYTEST310)
	$(PYTEST311) -m 'core and not slow'

# The slow tier (tests marked slow): the extended Lava oracle campaigns, the digits checkpoints on Lava over the
# whole test split and the random-graph campaign (at least 50 graphs); and on Python 3.11, every other test that
# runs without Lava. CI runs it after `make test`.
test-slow: $(STAMP) $(STAMP311)
	$(PYTEST310) -m slow
	$(PYTEST311) -m 'not core and not slow'

test-all: test test-slow

clean:
	rm -rf $(VENV) $(VENV311) build *.egg-info
