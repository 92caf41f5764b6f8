# The README's two commands. Each creates .venv when it is missing and installs fxprune
# (editable, with the extras the demo and the tests use) before running.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fxprune-installed

.PHONY: demo test test-slow install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip || true
	$(PY) -m pip install --quiet -e '.[onnx,dev,hf,analysis,apps,timm]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fxprune prune --model torchvision:resnet50 --sparsity 0.5 --criterion l1 --out runs/demo

# the default suite on TEST_WORKERS processes (pytest-xdist; each gets its share of the cores);
# `make test-slow` runs the tests marked slow (each covered by a benchmark in benchmarks/)
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow --durations=15

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
