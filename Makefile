# Entry points of the suite. Every target installs what it needs first (tools/install.sh).
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test backbones

install: $(STAMP)

$(STAMP): setup.cfg tools/install.sh
	bash tools/install.sh $(VENV)
	touch $@

## test: the whole test suite (tiny models, small images, CPU)
test: $(STAMP)
	$(PYTHON) -m pytest

## backbones: list the backbone registry
backbones: $(STAMP)
	$(PYTHON) -m benchmark backbones

## demo-data: small synthetic versions of all six datasets in their official layouts (DEMO_DIR, default data/demo/raw)
DEMO_DIR ?= data/demo/raw
.PHONY: demo-data
demo-data: $(STAMP)
	$(PYTHON) -m benchmark demo-data --out $(DEMO_DIR) --overwrite

## perf: speed benchmarks (every benchmarks/bench_*.py); each prints its numbers and exits 1 below its bar
.PHONY: perf
perf: $(STAMP)
	@for bench in benchmarks/bench_*.py; do echo "== $$bench"; $(PYTHON) $$bench || exit 1; done
