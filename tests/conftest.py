"""Shared test set-up: offline, headless, small thread counts ($SAFETY_STUDY_THREADS overrides them)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2_DEFAULT = "models/SmolLM2-135M-Instruct.Q4_1.gguf"


def model_file(variable: str, default: str, what: str, target: str) -> Path:
    "The model file $variable names, else `default` under the repository root; a missing one fails with what to run."
    p = Path(os.environ.get(variable) or default)
    if not p.is_absolute(): p = ROOT / p
    if not p.is_file():
        pytest.fail(f"the {what} tests need {p}; run `make {target}` (or set {variable} to a copy of "
                    f"{Path(default).name})", pytrace=False)
    return p


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    "The real SmolLM2-135M-Instruct GGUF: $SAFETY_STUDY_SMOLLM2, else models/… under the repository root."
    return model_file("SAFETY_STUDY_SMOLLM2", SMOLLM2_DEFAULT, "real-model", "fetch-smollm2")


JUDGE_LLM_DEFAULT = "models/Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf"


@pytest.fixture(scope="session")
def judge_llm_gguf() -> Path:
    "The instruction model of the LLM judge card: $SAFETY_STUDY_JUDGE_LLM, else models/… under the repository root."
    return model_file("SAFETY_STUDY_JUDGE_LLM", JUDGE_LLM_DEFAULT, "judge-model", "fetch-judge-llm")


@pytest.fixture(scope="session", autouse=True)
def thread_count():
    """$SAFETY_STUDY_THREADS, when set, replaces the thread counts the test modules set when imported, for the whole
    session (module fixtures included), so the suite can be run under other kernels and thread counts; set
    OMP_NUM_THREADS to the same number and ATEN_CPU_CAPABILITY (e.g. avx2) before starting pytest."""
    n = os.environ.get("SAFETY_STUDY_THREADS")
    if n:
        import torch
        torch.set_num_threads(int(n))
    yield n
