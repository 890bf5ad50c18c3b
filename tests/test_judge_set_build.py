"""The shipped judge set is rebuilt, byte for byte, from its data files (safety_study/data/labelled/sources/)
by scripts/build_judge_set.py, with the real answers taken from the shipped set (the model run is not
repeated): a change to a data file or to the builder fails here. The data files are read strictly."""
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from safety_study.core import file_sha256, package_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import build_judge_set as B  # noqa: E402
import judge_set_sources as S  # noqa: E402
import judge_set_written as W  # noqa: E402

SET, CARD = package_file("data", "labelled", "judge_set.csv"), package_file("data", "labelled", "judge_set.json")


@pytest.fixture(scope="module")
def card():
    return json.loads(CARD.read_text())


@pytest.fixture(scope="module")
def real():
    return B.real_part_from_set()


def test_rebuild_from_the_data_files_reproduces_the_shipped_set(tmp_path, card, real):
    assert file_sha256(SET) == card["sha256"]
    rebuilt = B.write(B.assemble(real), tmp_path)
    assert file_sha256(tmp_path / "judge_set.csv") == card["sha256"]
    assert rebuilt == card
    assert (tmp_path / "judge_set.json").read_bytes() == CARD.read_bytes()
    assert rebuilt["by_source"] == {"SmolLM2-135M-Instruct": len(real), "written": len(B.written_part(B.default_prompts())),
                                    B.ERROR_KINDS: len(B.error_kinds_part()), B.LADDER: len(B.ladder_part())}


def test_a_changed_card_changes_the_set(monkeypatch, real, card):
    pid = next(iter(W.HARMFUL))
    monkeypatch.setitem(W.HARMFUL, pid, {**W.HARMFUL[pid], "why": W.HARMFUL[pid]["why"] + " Really."})
    df = B.assemble(real)
    assert len(df) == card["n_items"]
    assert df.to_csv(index=False).encode() != SET.read_bytes()


def test_real_answers_agree_with_their_labels(tmp_path, real):
    assert len(real) == int((pd.read_csv(B.LABELS, keep_default_na=False).label != "drop").sum())
    cur = pd.read_csv(SET, keep_default_na=False, dtype=str)
    i = cur.index[cur.source == "SmolLM2-135M-Instruct"][0]
    cur.loc[i, "case"] = "plain_compliance" if cur.loc[i, "case"] != "plain_compliance" else "cut_off"
    cur.to_csv(tmp_path / "edited.csv", index=False)
    with pytest.raises(SystemExit, match="disagree with .*smollm2_labels.csv on `case`"):
        B.real_part_from_set(tmp_path / "edited.csv")


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


GOOD = '{"prompt_id": "2daebe65166d", "label": "NON_REFUSAL", "case": "code_only", "rule": "C5", "style": "s", "response": "x"}'


@pytest.mark.parametrize("line, error", [
    ('{"prompt_id": "2daebe65166d", "label": "NON_REFUSAL"', "not valid JSON"),
    (GOOD.replace('"style": "s", ', ""), "missing style"),
    (GOOD.replace("NON_REFUSAL", "MAYBE"), "'MAYBE' is not one of REFUSAL, NON_REFUSAL"),
    (GOOD.replace('"x"', "3"), "record.response: expected a string"),
    (GOOD.replace('"x"}', '"x", "note": "n"}'), "unknown key 'note'"),
    (GOOD.replace('"rule": "C5"', '"rule": "C5", "rule": "C1"'), "duplicate key 'rule'"),
    (GOOD.replace("2daebe65166d", "2DAEBE"), "is not a prompt_id"),
    ("", "blank line"),
])
def test_a_malformed_literal_answer_names_its_file_and_line(tmp_path, line, error):
    p = _write(tmp_path, "literal_answers.jsonl", f"{GOOD}\n{line}\n{GOOD}\n")
    with pytest.raises(S.SourceError, match=rf"literal_answers.jsonl:2: .*{error}"):
        S.literal_answers(p)


HARMFUL = "# a comment\naaaaaaaaaaaa:\n  topic: t\n  why: w\n  alt: a\n  steps: [s1, s2, s3, s4]\n"


@pytest.mark.parametrize("tail, line, error", [
    ("aaaaaaaaaaaa:\n  topic: t\n  why: w\n  alt: a\n  steps: []\n", 7, "duplicate key 'aaaaaaaaaaaa' \\(first on line 2\\)"),
    ("bbbbbbbbbbbb:\n  topic: t\n  why: w\n  alt: a\n  steps: [s1, s2, s3]\n", 11, "steps: 3 items, expected 0 or 4"),
    ("bbbbbbbbbbbb:\n  topic: yes\n  why: w\n  alt: a\n  steps: []\n", 8, "topic: expected a string, got bool"),
    ("bbbbbbbbbbbb:\n  topic: t\n  why: w\n  steps: []\n", 8, "missing alt"),
    ("bbbbbbbbbbbb:\n  topic: t\n  why: w\n  alt: a\n  step: []\n", 11, "unknown key 'step'"),
    ("123456789012:\n  topic: t\n  why: w\n  alt: a\n  steps: []\n", 7, "key 123456789012 is not a string"),
    ("bbbbbbbbbbbb:\n  topic: t\n  why: w\n  alt: [a\n", 11, "not valid YAML"),
])
def test_a_malformed_card_names_its_file_and_line(tmp_path, tail, line, error):
    p = _write(tmp_path, "harmful_cards.yaml", HARMFUL + tail)
    with pytest.raises(S.SourceError, match=rf"harmful_cards.yaml:{line}: .*{error}"):
        S.harmful_cards(p)


def test_a_harmless_card_misreads_only_a_known_word(tmp_path):
    p = _write(tmp_path, "harmless_cards.yaml",
               "aaaaaaaaaaaa:\n  intro: i\n  points:\n  - title: ''\n    text: x\n  outro: o\n  misread: nothing\n")
    with pytest.raises(S.SourceError, match=r"harmless_cards.yaml:7: aaaaaaaaaaaa.misread: 'nothing' is not a key"):
        S.harmless_cards({"killing"}, p)
    assert S.harmless_cards({"nothing"}, p) == {"aaaaaaaaaaaa": dict(intro="i", points=[("", "x")], outro="o", misread="nothing")}
