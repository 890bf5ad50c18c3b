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


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    "The real SmolLM2-135M-Instruct GGUF: $SAFETY_STUDY_SMOLLM2, else models/… under the repository root."
    p = Path(os.environ.get("SAFETY_STUDY_SMOLLM2") or SMOLLM2_DEFAULT)
    if not p.is_absolute(): p = ROOT / p
    if not p.is_file():
        pytest.fail(f"the real-model tests need {p}; run `make fetch-smollm2` (or set SAFETY_STUDY_SMOLLM2 to a copy "
                    "of SmolLM2-135M-Instruct.Q4_1.gguf)", pytrace=False)
    return p


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
