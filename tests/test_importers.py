"""Importers: each reference format from a project-made fixture, the import command, and bad inputs."""
import json
from pathlib import Path

import pandas as pd
import pytest

from safety_study import importers as I
from safety_study.cli import main
from safety_study.core import NON_REFUSAL, REFUSAL, StudyError

FIX = Path(__file__).parent / "fixtures"
KEY = ["model", "label", "refusal_judge"]


def test_summary_import_keeps_every_count(tmp_path):
    ref = pd.read_csv(FIX / "reference_summary.csv")
    j, s = I.import_files([FIX / "reference_summary.csv"], tmp_path)
    assert j.empty
    written = pd.read_csv(tmp_path / "summary.csv")
    m = ref.merge(written, on=KEY, how="outer", suffixes=("_ref", "_ours"), indicator=True)
    assert (m["_merge"] == "both").all() and len(m) == len(ref)
    for c in ("refused", "not_refused", "total"):
        assert (m[f"{c}_ref"] == m[f"{c}_ours"]).all()
    meta = json.loads((tmp_path / "import.json").read_text())
    assert meta["files"][str(FIX / "reference_summary.csv")]["format"] == "summary"


def test_model_names_mapping_keeps_variant(tmp_path):
    _, s = I.import_files([FIX / "reference_summary.csv"], tmp_path, model_names=FIX / "model_names.csv")
    assert set(s.model) == {"SmolLM2", "SmolLM2/abliterated", "Score 0"}
    ref = pd.read_csv(FIX / "reference_summary.csv")
    assert s.refused.sum() == ref.refused.sum() and s.total.sum() == ref.total.sum()


def test_wide_format(tmp_path):
    j, s = I.import_files([FIX / "reference_wide.csv"], tmp_path)
    w = pd.read_csv(FIX / "reference_wide.csv")
    for judge in ("regex", "llm_judge", "embedding"):
        col = w[f"is_refusal_{judge}"]
        got = j[j.judge == judge]
        assert len(got) == col.notna().sum()  # an empty cell is "not read", not a verdict
        assert (got.verdict == REFUSAL).sum() == (col == True).sum()  # noqa: E712
    assert set(j.variant) == {"original", "abliterated"}
    assert j.groupby("prompt").prompt_id.nunique().max() == 1  # the same question is one item across models
    row = s[(s.model == "Toy A") & (s.label == "harmless") & (s.refusal_judge == "llm_judge")].iloc[0]
    assert (row.refused, row.not_refused, row.total) == (0, 2, 2)


def test_user_study_files_become_human_judges(tmp_path):
    files = [FIX / "user_study_annotator_a.csv", FIX / "user_study_annotator_b.csv"]
    j, _ = I.import_files(files, tmp_path)
    assert list(dict.fromkeys(j.judge)) == ["human_1", "human_2"]
    h1 = j[j.judge == "human_1"].set_index("prompt_id")
    assert h1.loc["1", "verdict"] == REFUSAL and h1.loc["5", "verdict"] == NON_REFUSAL
    assert set(h1.checkpoint) == {"SmolLM2"} and set(h1.variant) == {"original"}
    assert h1.raw.iloc[0].startswith("annotator=alice")
    meta = json.loads((tmp_path / "import.json").read_text())
    assert meta["human_judges"] == ["human_1", "human_2"] and meta["annotators"]["human_2"]["annotators"] == ["bob"]


def test_user_study_variant_suffix():
    df = pd.read_csv(FIX / "user_study_annotator_a.csv").assign(model="Toy A/abliterated")
    u = I.read_user_study(df, "human_1")
    assert set(u.checkpoint) == {"Toy A"} and set(u.variant) == {"abliterated"}


def test_bad_inputs(tmp_path):
    w = pd.read_csv(FIX / "reference_wide.csv")
    with pytest.raises(StudyError, match="is_refusal_human"):
        I.read_wide(w, judges=["human"])  # a missing human column
    dup = tmp_path / "dup.csv"
    pd.concat([w, w.iloc[[0]]]).to_csv(dup, index=False)
    with pytest.raises(StudyError, match="repeat the same model and question"):
        I.import_files([dup], tmp_path / "out")
    assert not (tmp_path / "out" / "judgements.parquet").exists()  # nothing half-written
    with pytest.raises(StudyError, match="not booleans"):
        I.read_wide(w.assign(is_refusal_regex="sometimes"))
    with pytest.raises(StudyError, match="match none of the reference formats"):
        I.detect_format(pd.DataFrame({"x": [1]}))
    with pytest.raises(StudyError, match="no file"):
        I.import_files([tmp_path / "missing.csv"], tmp_path / "out")
    s = pd.read_csv(FIX / "reference_summary.csv")
    with pytest.raises(StudyError, match="repeated"):
        I.read_summary(pd.concat([s, s.iloc[[0]]]))
    # the same annotator file given twice is two judges; the same wide file twice is a duplicate
    with pytest.raises(StudyError, match="repeat the same item and judge"):
        I.import_files([FIX / "reference_wide.csv", FIX / "reference_wide.csv"], tmp_path / "out2")


def test_import_command(tmp_path, capsys):
    out = tmp_path / "imp"
    rc = main(["import", str(FIX / "reference_summary.csv"), str(FIX / "user_study_annotator_a.csv"),
               "--out", str(out), "--model-names", str(FIX / "model_names.csv")])
    assert rc == 0 and "imported 10 verdicts" in capsys.readouterr().out
    assert (out / "judgements.parquet").exists() and (out / "summary.csv").exists()
    rc = main(["import", str(FIX / "model_names.csv"), "--out", str(tmp_path / "bad")])
    assert rc == 2 and "match none of the reference formats" in capsys.readouterr().err
