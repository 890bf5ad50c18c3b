"""Importers: each reference format from a project-made fixture, the import command, and bad inputs."""
import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

from safety_study import importers as I
from safety_study.cli import main
from safety_study.core import NON_REFUSAL, REFUSAL, StudyError

FIX = Path(__file__).parent / "fixtures"
KEY = ["model", "label", "refusal_judge"]


# the reference's names for the hub ids of reference_summary.csv
RESOLVED = {"HuggingFaceTB/SmolLM2-1.7B-Instruct": "SmolLM2",
            "HuggingFaceTB/SmolLM2-1.7B-Instruct/abliterated": "SmolLM2/abliterated",
            "locuslab/mix_ift_v4-smollm2-1.7b-score0_only-600B": "Score 0"}


def test_summary_import_keeps_every_count(tmp_path):
    ref = pd.read_csv(FIX / "reference_summary.csv")
    ref["model"] = ref["model"].map(RESOLVED)
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


# ---- variant pairing on the project's reference-format fixtures (tests/fixtures/REFERENCE_FIXTURES.md)

SPELLED = {"SmolLM2-ALB": "X-ALB", "Raw Data - ALB": "X-ALB", "Score 0 -ALB": "X-ALB",
           "GLM-4-abliterated": "X-abliterated", "Ghost Model-ALB": "X-ALB"}
PAIRED = ["SmolLM2", "Raw Data", "Score 0", "GLM-4"]


def test_every_spelling_pairs_and_the_orphan_warns(tmp_path):
    with pytest.warns(I.UnpairedVariantWarning, match="'Ghost Model-ALB'"):
        j, s = I.import_files([FIX / "ref_summary_renamed.csv"], tmp_path)
    models = pd.read_csv(tmp_path / "models.csv").set_index("source")
    for name, rule in SPELLED.items():
        assert models.loc[name, "variant"] == "abliterated" and models.loc[name, "rule"] == rule, name
    assert models.loc["Score 0 -ALB", "checkpoint"] == "Score 0" and models.loc["Raw Data - ALB", "checkpoint"] == "Raw Data"
    rates = pd.read_csv(tmp_path / "rates.csv")
    assert list(rates.columns[:6]) == ["checkpoint", "variant", "label", "judge", "refused", "total"]
    variants = rates.groupby("checkpoint").variant.agg(lambda v: sorted(set(v)))
    assert [c for c in variants.index if variants[c] == ["abliterated", "original"]] == sorted(PAIRED)
    assert variants["Ghost Model"] == ["abliterated"]  # kept, not dropped
    meta = json.loads((tmp_path / "import.json").read_text())
    assert meta["pairs"] == PAIRED and meta["unpaired_abliterated"] == ["Ghost Model-ALB"] and meta["n_abliterated"] == 5
    ref = pd.read_csv(FIX / "ref_summary_renamed.csv")
    row = rates[(rates.checkpoint == "SmolLM2") & (rates.variant == "abliterated") & (rates.label == "harmful")
                & (rates.judge == "ChatGPT5")].iloc[0]
    assert (row.refused, row.total) == (15, 50)
    assert rates.refused.sum() == ref.refused.sum() and len(rates) == len(ref)


def test_hub_id_file_is_the_renamed_file(tmp_path):
    _, hub = I.import_files([FIX / "ref_summary_hub.csv"], tmp_path / "hub")
    with pytest.warns(I.UnpairedVariantWarning):
        _, ren = I.import_files([FIX / "ref_summary_renamed.csv"], tmp_path / "ren")
    assert set(hub.refusal_judge) == {"regex", "ChatGPT5", "SmolLM2"}  # openai, HuggingFaceTB_SmolLM2-1.7B-Instruct
    m = hub.merge(ren, on=KEY, how="outer", suffixes=("_hub", "_ren"), indicator=True)
    assert set(m.loc[m._merge == "right_only", "model"]) == {"Ghost Model/abliterated"}
    both = m[m._merge == "both"]
    assert len(both) == 48 and (both.refused_hub == both.refused_ren).all() and (both.total_hub == both.total_ren).all()
    assert json.loads((tmp_path / "hub" / "import.json").read_text())["pairs"] == PAIRED
    with pytest.warns(I.UnpairedVariantWarning):  # the two together: one set of counts, kept once
        _, s = I.import_files([FIX / "ref_summary_hub.csv", FIX / "ref_summary_renamed.csv"], tmp_path / "both")
    assert len(s) == 50


def test_user_study_files_pair_all_ten(tmp_path, capsys):
    files = [FIX / "ref_user_study_1.csv", FIX / "ref_user_study_2.csv"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every abliterated system has its original: no warning
        assert main(["import", *map(str, files), "--out", str(tmp_path)]) == 0
    assert "10 of 10 abliterated systems paired" in capsys.readouterr().out
    j = pd.read_parquet(tmp_path / "judgements.parquet")
    assert j.groupby("judge").size().to_dict() == {"human_1": 200, "human_2": 200}
    rates = pd.read_csv(tmp_path / "rates.csv")
    pairs = rates.groupby("checkpoint").variant.nunique()
    assert len(pairs) == 10 and (pairs == 2).all()
    assert set(rates.checkpoint) == {"SmolLM2", "Raw Data", "Score 0", "Score 0 + Rephrase", "Score 0 + Rephrase + Metatags",
                                     "Score 0 + Rephrase + Refusals", "Safety Oracle", "GLM-4", "Llama-3.3", "Qwen3"}
    r = rates[(rates.judge == "human_1") & (rates.checkpoint == "SmolLM2") & (rates.label == "harmful")].set_index("variant")
    assert (r.loc["original", "refused"], r.loc["abliterated", "refused"], r.loc["original", "total"]) == (5, 1, 5)
    assert set(rates.source) == {"items"}


def test_wide_file_items_meet_the_annotators(tmp_path):
    j, _ = I.import_files([FIX / "ref_user_study_judges_wide.csv", FIX / "ref_user_study_1.csv"], tmp_path)
    assert set(j.judge) == {"regex", "ChatGPT5", "human_1"}
    assert set(j.prompt_id) == {str(q) for q in range(1, 11)}  # the wide file's questions took the annotators' qids
    w = j.pivot_table(index=["checkpoint", "variant", "prompt_id"], columns="judge", values="verdict", aggfunc="first")
    assert len(w.dropna()) == 200 and (w.ChatGPT5 != w.human_1).sum() == 2


def test_names_table_extends_and_overrides(tmp_path):
    summary = pd.DataFrame({"model": ["org/new-model", "models/org/new-model-abliterated", "Ghost Model-ALB"],
                            "label": "harmful", "refusal_judge": "org_new-model", "refused": [9, 4, 1],
                            "not_refused": [1, 6, 9], "total": 10})
    summary.to_csv(tmp_path / "s.csv", index=False)
    (tmp_path / "names.yaml").write_text("org/new-model: New\n'Ghost Model-ALB': {name: Ghost ALB, variant: original}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, s = I.import_files([tmp_path / "s.csv"], tmp_path / "y", model_names=tmp_path / "names.yaml")
    assert s[["model", "refusal_judge", "refused"]].values.tolist() == [
        ["New", "New", 9], ["New/abliterated", "New", 4], ["Ghost ALB", "New", 1]]
    pd.DataFrame({"model": ["org/new-model"], "name": ["Newer"], "variant": [""]}).to_csv(tmp_path / "n.csv", index=False)
    with pytest.warns(I.UnpairedVariantWarning, match="Ghost Model-ALB"):
        _, s = I.import_files([tmp_path / "s.csv"], tmp_path / "c", model_names=tmp_path / "n.csv")
    assert s.model.tolist() == ["Newer", "Newer/abliterated", "Ghost Model/abliterated"]


def test_bad_names_tables_and_conflicting_summaries(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"model": ["a", "a"], "name": ["A", "B"]}).to_csv(bad, index=False)
    with pytest.raises(StudyError, match=r"\['a'\] given different names"):
        I.import_files([FIX / "reference_summary.csv"], tmp_path / "o1", model_names=bad)
    pd.DataFrame({"model": ["a"], "name": ["A"], "variant": ["edited"]}).to_csv(bad, index=False)
    with pytest.raises(StudyError, match="variant values"):
        I.import_files([FIX / "reference_summary.csv"], tmp_path / "o1", model_names=bad)
    pd.DataFrame({"model": ["a"], "label": ["x"]}).to_csv(bad, index=False)
    with pytest.raises(StudyError, match="missing column"):
        I.import_files([FIX / "reference_summary.csv"], tmp_path / "o1", model_names=bad)
    with pytest.raises(StudyError, match="use a .csv"):
        I.load_model_names(FIX / "REFERENCE_FIXTURES.md")
    with pytest.raises(StudyError, match="different prompt sets"):
        I.import_files([FIX / "ref_summary_hub.csv", FIX / "ref_summary_10q.csv"], tmp_path / "o2")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()  # nothing half-written
