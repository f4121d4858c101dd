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

## bench: evaluate backbones on a board, then print its tables. No arguments: the demo (synthetic data
##        generated and prepared under data/demo/ if missing, random_vit_tiny + random_resnet18, demo board).
##        Real data: make bench BACKBONE=mgca_vit DATA=/path/to/prepared [BOARD=mgca-cxr-v1] [BENCH_ARGS=...]
BACKBONE      ?=
DATA          ?=
BOARD         ?=
BENCH_ARGS    ?=
DEMO_PREPARED ?= data/demo/prepared
DEMO_IMAGES   ?= 300
DEMO_SIZE     ?= 128
DEMO_BOARD    := demo-mgca-cxr-v1
DEMO_BACKBONES := random_vit_tiny,random_resnet18
REAL_BOARD    := mgca-cxr-v1
.PHONY: bench tables submit
bench: $(STAMP)
ifeq ($(DATA),)
	@for ds in $$($(PYTHON) -m benchmark run --print-datasets --board $(DEMO_BOARD)); do \
	  if [ ! -f $(DEMO_PREPARED)/$$ds/manifest.json ]; then \
	    [ -f $(DEMO_DIR)/$$ds/DEMO_DATASET ] || $(PYTHON) -m benchmark demo-data --out $(DEMO_DIR) --datasets $$ds \
	      --images $(DEMO_IMAGES) --size $(DEMO_SIZE) || exit 1; \
	    $(PYTHON) -m benchmark prepare $$ds --raw $(DEMO_DIR)/$$ds --out $(DEMO_PREPARED) --image-size $(DEMO_SIZE) || exit 1; \
	  fi; \
	done
	$(PYTHON) -m benchmark run --backbone $(or $(BACKBONE),$(DEMO_BACKBONES)) --board $(or $(BOARD),$(DEMO_BOARD)) \
	  --data $(DEMO_PREPARED) $(BENCH_ARGS)
	$(PYTHON) -m benchmark tables --board $(or $(BOARD),$(DEMO_BOARD)) --format md --format html
else
	$(PYTHON) -m benchmark run --backbone $(or $(BACKBONE),mgca_vit) --board $(or $(BOARD),$(REAL_BOARD)) --data $(DATA) $(BENCH_ARGS)
	$(PYTHON) -m benchmark tables --board $(or $(BOARD),$(REAL_BOARD)) --format md --format html
endif

## tables: Tables 1-2 (md, tex, html), plots and the static page of a board (BOARD, default mgca-cxr-v1)
tables: $(STAMP)
	$(PYTHON) -m benchmark tables --board $(or $(BOARD),$(REAL_BOARD))

## submit: evaluate a checkpoint and test it against every entry of a board:
##         make submit CHECKPOINT=path ARCH=resnet50 NAME=my_model PRETRAINING=mimic-cxr DATA=/path/to/prepared
submit: $(STAMP)
	$(PYTHON) -m benchmark submit --checkpoint $(CHECKPOINT) --arch $(ARCH) --name $(NAME) \
	  --pretraining-data $(PRETRAINING) --data $(DATA) --board $(or $(BOARD),$(REAL_BOARD)) $(BENCH_ARGS)
