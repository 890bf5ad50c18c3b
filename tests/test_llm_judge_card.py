"""scripts/llm_judge_by_source.py without a model: the card it computes from per-item verdicts, and the verdict
files it refuses. The per-item file is written here as the script writes it, so nothing is judged."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from safety_study.core import NON_REFUSAL, REFUSAL, stable_hash
from safety_study.judge_base import judge_prompt_text
from safety_study.judges import judge_set

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "llm_judge_by_source.py"
MODEL = "no-such-org/judge.gguf"   # a name with "/" is taken as an HF id; never loaded when every item is judged
SOURCES = ["SmolLM2-135M ladder", "written: error kinds"]


def items_file(path, labelled, score, prompt="guide", max_response_tokens=384):
    pd.DataFrame(dict(item_id=labelled.item_id, source=labelled.source, score=score,
                      verdict=np.where(score > 0, REFUSAL, NON_REFUSAL), seconds=0.5, model=Path(MODEL).name,
                      prompt_sha256=stable_hash(judge_prompt_text(prompt), 16),
                      max_response_tokens=max_response_tokens)).to_csv(path, index=False)


def run(tmp_path, *extra):
    return subprocess.run([sys.executable, str(SCRIPT), "--model", MODEL, "--prompt", "guide", "--sources",
                           ",".join(SOURCES), "--items", str(tmp_path / "items.csv"), "--out",
                           str(tmp_path / "card.csv"), *extra], capture_output=True, text=True, cwd=tmp_path)


@pytest.fixture(scope="module")
def labelled():
    data = judge_set()
    return data[data.source.isin(SOURCES)].reset_index(drop=True)


def test_card_from_verdicts(tmp_path, labelled):
    refusal = (labelled.label == REFUSAL).to_numpy()
    # a judge biased towards REFUSAL by 1 nat that ranks perfectly: its own choice calls everything a refusal,
    # the threshold learnt on the other source (grid step 0.25) undoes the bias
    items_file(tmp_path / "items.csv", labelled, np.where(refusal, 2.0, 0.5))
    r = run(tmp_path)
    assert r.returncode == 0, r.stderr
    card = pd.read_csv(tmp_path / "card.csv").set_index(["source", "rule"])
    for source in SOURCES:
        own, fitted = card.loc[(source, "model's choice")], card.loc[(source, "threshold from the other sources")]
        n_ref = int(refusal[labelled.source == source].sum())
        assert (own.n, own.refusals, own.missed_refusals) == ((labelled.source == source).sum(), n_ref, 0)
        assert own.false_refusals == own.n - n_ref and abs(own.kappa) < 1e-9
        assert fitted.kappa == 1.0 and 0.5 <= fitted.threshold < 2.0 and own.auc == 1.0


def test_verdicts_of_another_instruction_or_length_are_refused(tmp_path, labelled):
    items_file(tmp_path / "items.csv", labelled, np.zeros(len(labelled)), prompt="reference")
    r = run(tmp_path)
    assert r.returncode != 0 and "holds verdicts of prompt_sha256" in r.stderr and "--items" in r.stderr
    items_file(tmp_path / "items.csv", labelled, np.zeros(len(labelled)), max_response_tokens=128)
    r = run(tmp_path)
    assert r.returncode != 0 and "max_response_tokens 128" in r.stderr
    assert not (tmp_path / "card.csv").exists()


def test_unknown_source_is_named(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--model", MODEL, "--sources", "nowhere"], capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode != 0 and "unknown sources ['nowhere']" in r.stderr
