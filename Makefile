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

## selftest: is this machine ready? One tiny cell of every task, head and mode, a few pretraining steps and, with 2+
##           GPUs, 2-process DDP (NCCL), on the GPU when there is one (DEVICE=cpu or cuda to choose); synthetic data in
##           a temporary folder; prints each check's time and peak memory, exits 1 on any failure
DEVICE ?=
.PHONY: selftest
selftest: $(STAMP)
	$(PYTHON) -m benchmark selftest $(if $(DEVICE),--device $(DEVICE))

## demo-data: small synthetic versions of all six datasets in their official layouts (DEMO_DIR, default data/demo/raw)
DEMO_DIR ?= data/demo/raw
.PHONY: demo-data
demo-data: $(STAMP)
	$(PYTHON) -m benchmark demo-data --out $(DEMO_DIR) --overwrite

## prepare: prepare every dataset found in RAW (a folder of <dataset>/ raw folders, default the demo's) into PREPARED
RAW      ?= $(DEMO_DIR)
PREPARED ?= data/prepared
.PHONY: prepare
prepare: $(STAMP)
	@for ds in $$($(PYTHON) -c "import benchmark.data.datasets; from benchmark.data.registry import DATASETS; print(*DATASETS.names())"); do \
	  if [ -d $(RAW)/$$ds ]; then $(PYTHON) -m benchmark prepare $$ds --raw $(RAW)/$$ds --out $(PREPARED) $(PREPARE_ARGS) || exit 1; \
	  else echo "skip $$ds: no folder $(RAW)/$$ds"; fi; \
	done

## perf: speed benchmarks (every benchmarks/bench_*.py); each prints its numbers and exits 1 below its bar
.PHONY: perf
perf: $(STAMP)
	@for bench in benchmarks/bench_*.py; do echo "== $$bench"; $(PYTHON) $$bench || exit 1; done

## bench: evaluate backbones on a board, then print its tables. No arguments: the demo (synthetic data
##        generated and prepared under data/demo/ if missing, mgca_demo pretrained here if missing, random_resnet18,
##        demo board; ends with mgca_demo vs random_resnet18 at 1 % labels and mgca_demo's zero-shot and retrieval
##        columns against chance; BACKBONE=random_vit_tiny adds the ViT).
##        Real data: make bench BACKBONE=mgca_vit DATA=/path/to/prepared [BOARD=name] [BENCH_ARGS=...]
##        Default boards are the ones marked "default": true in leaderboards/*/protocol.json.
BACKBONE      ?=
DATA          ?=
BOARD         ?=
BENCH_ARGS    ?=
DEMO_PREPARED ?= data/demo/prepared
DEMO_IMAGES   ?= 300
# The linear-classification datasets are larger, for the demo's check that MGCA pretraining beats random
# initialisation at 1 % (`compare ... --expect-better`): with 1000 images a 1 % draw held 7, and the probe's
# result hung on the draw (RSNA draw 0: AUROC 0.2-0.3 for every ResNet-18); with 3000 it holds 21.
DEMO_CLASSIFICATION_IMAGES ?= 3000
DEMO_CLASSIFICATION_DATASETS := chexpert rsna covidx
DEMO_SIZE     ?= 128
DEMO_DATA_NICE ?=
# The pretrained demo backbone and its random twin, what the demo check compares. random_vit_tiny is not in
# the default, for make bench's time: its 25 cells were the costliest third of the demo's 75, its probe
# encoding each image at its own 224 px (3.2x the CPU of a ResNet-18 at the demo's 112).
DEMO_BASELINE  := random_resnet18
DEMO_BACKBONES := mgca_demo,$(DEMO_BASELINE)
DEMO_MGCA_CKPT := checkpoints/mgca_demo.ckpt
# Without DATA, bench and submit work on the demo: synthetic data under data/demo/, the default demo board.
ifeq ($(DATA),)
RUN_DATA      := $(DEMO_PREPARED)
RUN_BOARD     := $(if $(BOARD),--board $(BOARD),--demo)
RUN_BACKBONES := $(or $(BACKBONE),$(DEMO_BACKBONES))
NEEDS_DATA    := demo-inputs
else
RUN_DATA      := $(DATA)
RUN_BOARD     := $(if $(BOARD),--board $(BOARD))
RUN_BACKBONES := $(or $(BACKBONE),mgca_vit)
NEEDS_DATA    :=
endif

.PHONY: bench tables submit demo-prepared demo-inputs demo-shards
## demo-inputs: the demo data and the demo MGCA checkpoint, side by side (independent; generating and preparing
##              data is mostly one Python thread, so on 2 cores it fits beside pretraining); the demo MIMIC corpus,
##              which the checkpoint is pretrained on and the retrieval task reads, comes first on the checkpoint's side.
##              The data side runs at lower priority (nice 10): pretraining is the longer side and leaves enough of a
##              core idle for the data, which finishes long before it, so pretraining is not slowed down by it
demo-inputs: $(STAMP)
	$(MAKE) -j2 demo-prepared $(DEMO_MGCA_CKPT) DEMO_DATA_NICE="nice -n 10"

## demo-prepared: generate and prepare the demo datasets of the demo board that are missing or out of date
##                (other sizes, an older generator or preparation version); MIMIC-CXR is demo-mimic's (the
##                pretraining corpus, made before the demo checkpoint: never rewritten while pretraining reads it)
demo-prepared: $(STAMP)
	@for ds in $$($(PYTHON) -m benchmark run --print-datasets --demo); do \
	  if [ $$ds = mimic ]; then echo "mimic: made by demo-mimic (the demo pretraining corpus, whose test split retrieval reads)"; continue; fi; \
	  case " $(DEMO_CLASSIFICATION_DATASETS) " in *" $$ds "*) images=$(DEMO_CLASSIFICATION_IMAGES);; *) images=$(DEMO_IMAGES);; esac; \
	  $(DEMO_DATA_NICE) $(PYTHON) -m benchmark demo-data --out $(DEMO_DIR) --datasets $$ds --images $$images --size $(DEMO_SIZE) --refresh || exit 1; \
	  $(DEMO_DATA_NICE) $(PYTHON) -m benchmark prepare $$ds --raw $(DEMO_DIR)/$$ds --out $(DEMO_PREPARED) --image-size $(DEMO_SIZE) --refresh || exit 1; \
	done

# The demo's cells are small (a ResNet-18 at 112 px, probes of a few seconds): one process with two threads
# left a core idle most of the time. The default demo evaluates its grid as DEMO_SHARDS shards side by side
# (`run --shard K/N`: whole feature-cache groups per shard, balanced by estimated cost), one thread each; the
# run after them finds every cell done, retries any that failed and prints the summary. Shard 1 shows its
# progress bars; the others print their summary line only (bars of two processes would overwrite each other).
DEMO_SHARDS := 2
demo-shards: $(STAMP) $(NEEDS_DATA)
	$(MAKE) -j$(DEMO_SHARDS) $(foreach k,$(shell seq $(DEMO_SHARDS)),demo-shard-$(k))
demo-shard-%: $(STAMP)
	OMP_NUM_THREADS=1 $(PYTHON) -m benchmark run --backbone $(RUN_BACKBONES) $(RUN_BOARD) --data $(RUN_DATA) \
	  --shard $*/$(DEMO_SHARDS) $(if $(filter 1,$*),,--no-progress)

bench: $(STAMP) $(NEEDS_DATA) $(if $(DATA)$(BACKBONE)$(BENCH_ARGS),,demo-shards)
	$(PYTHON) -m benchmark run --backbone $(RUN_BACKBONES) $(RUN_BOARD) --data $(RUN_DATA) $(BENCH_ARGS)
	$(PYTHON) -m benchmark tables $(RUN_BOARD) --format md --format html
	$(if $(DATA)$(BACKBONE)$(BENCH_ARGS),,$(PYTHON) -m benchmark $(DEMO_COMPARISON))
	$(if $(DATA)$(BACKBONE)$(BENCH_ARGS),,$(PYTHON) -m benchmark $(DEMO_CHANCE))

## demo-check: does the demo MGCA beat the random backbone of its architecture on demo linear classification
##             at 1 % labels, on every dataset (higher mean over the board's draws and seeds, paired test's
##             Holm-adjusted p < 0.05)? And does it beat chance on every zero-shot and retrieval column (one-sided
##             permutation, exact or rank test against a model whose outputs ignore the images, Holm-adjusted
##             p < 0.05)? Exit 1 if not, or if a column lacks the runs. (`make bench` prints both without
##             failing on them.)
DEMO_COMPARISON := compare mgca_demo $(DEMO_BASELINE) --demo --tasks classification --fractions 1
DEMO_CHANCE     := chance mgca_demo --demo --tasks zeroshot,retrieval
.PHONY: demo-check
demo-check: $(STAMP)
	$(PYTHON) -m benchmark $(DEMO_COMPARISON) --expect-better
	$(PYTHON) -m benchmark $(DEMO_CHANCE) --expect-better

## pretrain: MGCA pretraining (pretrain/). No arguments: the demo MGCA (ResNet-18) on the demo MIMIC corpus, generated
##           and prepared under data/demo/ if missing, exported to checkpoints/mgca_demo.ckpt (a few minutes on 2 cores;
##           remade by make bench when pretrain/configs/demo.toml or DEMO_PRETRAIN_SIZE changes).
##           Real data: make pretrain PRETRAIN_CONFIG=mimic_vit_base PRETRAIN_ARGS="data=DATA/mimic image_init=FILE text_model=PATH"
##           (several GPUs: torchrun --nproc_per_node N -m pretrain --config mimic_vit_base ...)
PRETRAIN_CONFIG      ?= demo
PRETRAIN_ARGS        ?=
DEMO_PRETRAIN_IMAGES ?= 2000
# The demo MGCA is pretrained on a smaller corpus image than the demo boards' (the crop scales with it:
# pretrain/data.py crop_geometry): most of make bench's time was demo pretraining (17 epochs of 25 s at
# 128 px); at 96 px an epoch takes 18 s (see pretrain/configs/demo.toml for what it does to the demo check).
DEMO_PRETRAIN_SIZE   := 96
.PHONY: pretrain demo-mimic
demo-mimic: $(STAMP)
	$(PYTHON) -m benchmark demo-data --out $(DEMO_DIR) --datasets mimic --images $(DEMO_PRETRAIN_IMAGES) --size $(DEMO_PRETRAIN_SIZE) --refresh
	$(PYTHON) -m benchmark prepare mimic --raw $(DEMO_DIR)/mimic --out $(DEMO_PREPARED) --image-size $(DEMO_PRETRAIN_SIZE) --refresh

# The demo checkpoint is remade when its config or its corpus size changes (a stamp file named after the size);
# each version of the two trains in its own run folder (a run folder resumes only the settings it was started with).
DEMO_PRETRAIN_CONFIG := pretrain/configs/demo.toml
DEMO_PRETRAIN_STAMP  := $(DEMO_DIR)/pretrain-corpus-$(DEMO_PRETRAIN_SIZE)px.stamp
DEMO_PRETRAIN_OUT     = runs/pretrain/demo-$(shell cksum < $(DEMO_PRETRAIN_CONFIG) | cut -d" " -f1)-$(DEMO_PRETRAIN_SIZE)px
DEMO_PRETRAIN_PATHS   = data=$(DEMO_PREPARED)/mimic out=$(DEMO_PRETRAIN_OUT) export=$(DEMO_MGCA_CKPT)
pretrain: $(STAMP) $(if $(filter demo,$(PRETRAIN_CONFIG)),demo-mimic)
	$(PYTHON) -m pretrain --config $(PRETRAIN_CONFIG) $(if $(filter demo,$(PRETRAIN_CONFIG)),$(DEMO_PRETRAIN_PATHS)) $(PRETRAIN_ARGS)

# demo-mimic is order-only: it always runs first (a no-op when current) without making the checkpoint stale.
$(DEMO_MGCA_CKPT): $(DEMO_PRETRAIN_CONFIG) $(DEMO_PRETRAIN_STAMP) | $(STAMP) demo-mimic
	$(PYTHON) -m pretrain --config demo $(DEMO_PRETRAIN_PATHS)

$(DEMO_PRETRAIN_STAMP):
	mkdir -p $(@D) && touch $@

## tables: Tables 1-3 (md, tex, html; Table 3 where the board has zero-shot or retrieval tasks), plots and the static page of a board (BOARD, default: the default real-data board)
tables: $(STAMP)
	$(PYTHON) -m benchmark tables $(if $(BOARD),--board $(BOARD))

## submit: evaluate a checkpoint and test it against every entry of a board:
##         make submit CKPT=path ARCH=resnet50 NAME=my_model PRETRAINING=mimic-cxr DATA=/path/to/prepared
##         Without arguments: a second demo checkpoint (random ResNet-18, seed 1) on the demo board.
##         ARCH names any source (hf:<folder>, timm:<name>, open_clip:<name>, xrv:<name>, ...; `backbones --all`);
##         PREPROCESS=protocol feeds it the MGCA protocol's normalisation instead of its own (default: model).
DEMO_CKPT := checkpoints/demo_resnet18_seed1.ckpt
CKPT        ?= $(if $(DATA),,$(DEMO_CKPT))
ARCH        ?= resnet18
NAME        ?= demo_submission
PRETRAINING ?= none
PREPROCESS  ?= model
submit: $(STAMP) $(NEEDS_DATA)
	@if [ "$(CKPT)" = "$(DEMO_CKPT)" ] && [ ! -f $(DEMO_CKPT) ]; then \
	  $(PYTHON) -m benchmark demo-checkpoint --arch resnet18 --seed 1 --out $(DEMO_CKPT); fi
	$(PYTHON) -m benchmark submit --checkpoint $(CKPT) --arch $(ARCH) --name $(NAME) \
	  --pretraining-data $(PRETRAINING) --preprocess $(PREPROCESS) --data $(RUN_DATA) $(RUN_BOARD) $(BENCH_ARGS)
