# The two entry points: `make demo` and `make test`. Both build .venv from Python 3.10 when it is missing.
PYTHON ?= $(shell command -v pyenv >/dev/null 2>&1 && pyenv which python 2>/dev/null || command -v python3.10)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-all lint venv clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 10), "spikec needs Python 3.10 (lava-nc 0.10.0); got " + sys.version' \
		|| { echo "error: $(VENV) is not Python 3.10; remove it and rerun (or set PYTHON=/path/to/python3.10)"; exit 2; }
	@# -qq: errors still show; setuptools' editable install and this machine's pip config print notices on every run.
	$(VENV)/bin/python -m pip install -qq --upgrade pip
	$(VENV)/bin/python -m pip install -qq -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

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

test: lint
	$(VENV)/bin/python -m pytest -q

# The slow tier (tests marked slow): the extended Lava oracle campaigns, the digits checkpoints on Lava over the
# whole test split and the random-graph campaign (at least 50 graphs); CI runs it after `make test`.
test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m slow

test-all: test test-slow

clean:
	rm -rf $(VENV) build *.egg-info
