"""Metrics against hand-computed values, and the bad inputs the aggregate must survive."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.contingency_tables import mcnemar

from safety_study import metrics as M
from safety_study.core import NON_REFUSAL, PARSE_ERROR, REFUSAL, StudyError
from safety_study.importers import read_user_study

from _tolerance import fp64_approx

FIX = Path(__file__).parent / "fixtures"


def annotators():
    a = read_user_study(pd.read_csv(FIX / "user_study_annotator_a.csv"), "human_1")
    b = read_user_study(pd.read_csv(FIX / "user_study_annotator_b.csv"), "human_2")
    return pd.concat([a, b], ignore_index=True)


def table(spec, study="s"):
    "spec: {judge: {(checkpoint, variant): 'RRNE...'}}, prompts p0.. with the first half harmful."
    rows = []
    code = {"R": REFUSAL, "N": NON_REFUSAL, "E": PARSE_ERROR}
    for judge, d in spec.items():
        for (ck, var), vs in d.items():
            for i, v in enumerate(vs):
                if v == "-": continue
                rows.append(dict(study=study, checkpoint=ck, variant=var, prompt_id=f"p{i}", label="harmful" if i < len(vs) // 2 else "harmless",
                                 judge=judge, verdict=code[v]))
    return pd.DataFrame(rows)


def test_two_annotators_hand_computed():
    j = annotators()
    a = M.pair_agreement(j, n_boot=500)
    row = a[(a.label == "all") & (a.variant == "all")].iloc[0]
    assert (row.judge_a, row.judge_b, row.n_items) == ("human_1", "human_2", 10)
    assert row.agreement == fp64_approx(0.8)
    assert row.kappa == fp64_approx(7 / 12)
    assert row.ac1 == fp64_approx(8 / 13)
    assert row.kappa_ci_low <= row.kappa <= row.kappa_ci_high
    p = M.panel_agreement(j)
    all_ = p[p.label == "all"].iloc[0]
    assert all_.fleiss_kappa == fp64_approx(7 / 12)
    assert all_.krippendorff_alpha == fp64_approx(29 / 48)


def test_single_class_stratum_is_undefined_not_zero():
    j = annotators()
    # harmless stratum: both annotators said NON_REFUSAL on items 6-9 but b refused item 10 -> defined;
    # make a stratum where both agree on one class only
    j = j[~(j.prompt_id == "10")]
    a = M.pair_agreement(j, n_boot=200)
    row = a[(a.label == "harmless") & (a.variant == "original")].iloc[0]
    assert np.isnan(row.kappa) and row.kappa != 0
    assert "single class" in row.reason and "NON_REFUSAL" in row.reason
    assert row.agreement == 1.0 and row.ac1 == fp64_approx(1.0)
    p = M.panel_agreement(j)
    assert "single class" in p[(p.label == "harmless") & (p.variant == "original")].reason.item()


def test_bootstrap_resamples_prompts_not_rows():
    # the same four prompts judged identically on four checkpoints: perfectly clustered responses.
    one = {"x": {("A", "original"): "RRNNRN"}, "y": {("A", "original"): "RNNNRR"}}
    four = {k: {(c, "original"): v[("A", "original")] for c in "ABCD"} for k, v in one.items()}
    a1 = M.pair_agreement(table(one), strata=(), n_boot=400, seed=3).iloc[0]
    a4 = M.pair_agreement(table(four), strata=(), n_boot=400, seed=3).iloc[0]
    assert a4.n_items == 4 * a1.n_items and a4.kappa == fp64_approx(a1.kappa)
    # resampling prompts: four copies of a prompt add no information, the interval must not shrink
    assert (a4.kappa_ci_low, a4.kappa_ci_high) == fp64_approx((a1.kappa_ci_low, a1.kappa_ci_high))
    again = M.pair_agreement(table(four), strata=(), n_boot=400, seed=3).iloc[0]
    assert again.kappa_ci_low == a4.kappa_ci_low  # seeded


def test_different_item_sets_inner_join_and_report():
    j = table({"x": {("A", "original"): "RRRNNN"}, "y": {("A", "original"): "RR-NNR"}, "z": {("A", "original"): "RRENNN"}})
    a = M.pair_agreement(j, strata=(), n_boot=100).set_index(["judge_a", "judge_b"])
    assert a.loc[("x", "y"), ["n_items", "n_missing", "n_parse_error"]].tolist() == [5, 1, 0]
    assert a.loc[("x", "z"), ["n_items", "n_missing", "n_parse_error"]].tolist() == [5, 0, 1]
    assert a.loc[("y", "z"), ["n_items", "n_missing", "n_parse_error"]].tolist() == [5, 1, 0]  # p2: y never read it
    cov = M.item_coverage(j).set_index("judge")
    assert cov.loc["y", "n_not_judged"] == 1 and cov.loc["z", "n_parse_error"] == 1


def test_duplicates_and_bad_vocabulary_raise():
    j = table({"x": {("A", "original"): "RN"}})
    with pytest.raises(StudyError, match="repeat the same item and judge"):
        M.refusal_rates(pd.concat([j, j.iloc[:1]]))
    with pytest.raises(StudyError, match="verdict"):
        M.refusal_rates(j.assign(verdict="NON-REFUSAL"))
    bad = j.copy(); bad.loc[0, "label"] = "harmless"; bad = pd.concat([bad, j.iloc[[0]].assign(judge="y")])
    with pytest.raises(StudyError, match="different labels"):
        M.check_judgements(bad)


def test_rates_exclude_parse_errors_and_wilson():
    j = table({"x": {("A", "original"): "RREN"}})  # harmful: R R ; harmless: E N
    r = M.refusal_rates(j).set_index("label")
    assert r.loc["harmful", ["refused", "n", "n_parse_error"]].tolist() == [2, 2, 0]
    assert r.loc["harmless", ["refused", "n", "n_parse_error"]].tolist() == [0, 1, 1]
    # Wilson 2/2 at 95%: lower = 1 / (1 + z^2/2) = 0.3424
    assert r.loc["harmful", "ci_low"] == pytest.approx(0.3424, abs=5e-5)  # the literal has 4 decimals
    assert r.loc["harmful", "ci_high"] == fp64_approx(1.0)


def test_abliteration_effect_and_mcnemar():
    j = table({"x": {("A", "original"): "RRRRRRNNNNNN", ("A", "abliterated"): "NNNNNRNNNNNR"}})
    e = M.abliteration_effect(j, n_boot=300).set_index("label")
    h = e.loc["harmful"]
    assert (h.n_pairs, h.refusals_lost, h.refusals_gained) == (6, 5, 0)
    assert h.delta == fp64_approx(-5 / 6)
    assert h.mcnemar_p == fp64_approx(mcnemar([[1, 5], [0, 0]], exact=True).pvalue) == fp64_approx(2 * 0.5 ** 5)
    assert h.delta_ci_low <= h.delta <= h.delta_ci_high
    assert e.loc["harmless", "refusals_gained"] == 1


def test_label_confusion_reference_definitions():
    j = table({"x": {("A", "original"): "RRNRNN"}})  # harmful p0-2: R R N; harmless p3-5: R N N
    c = M.label_confusion(j).iloc[0]
    assert (c.TP, c.FN, c.FP, c.TN) == (2, 1, 1, 2)
    assert c.precision == fp64_approx(2 / 3) and c.recall == fp64_approx(2 / 3) and c.accuracy == fp64_approx(4 / 6)


def test_judges_vs_human_majority():
    j = pd.concat([annotators(), annotators().query("judge == 'human_1'").assign(judge="machine")])
    # machine copies human_1; consensus of (human_1, human_2) ties on items 4 and 10
    v = M.judges_vs_humans(j, ["human_1", "human_2"]).set_index("judge").loc["machine"]
    assert (v.n_items, v.n_ties, v.n_pos, v.n_neg) == (8, 2, 3, 5)
    assert v.sensitivity == 1.0 and v.specificity == 1.0
    with pytest.raises(StudyError, match="human_3"):
        M.judges_vs_humans(j, ["human_3"])


def test_summary_shape_round_trip():
    j = table({"x": {("A", "original"): "RREN", ("A", "abliterated"): "NNNN"}})
    s = M.summary_table(j)
    assert list(s.columns) == ["model", "label", "refusal_judge", "refused", "not_refused", "total"]
    assert set(s.model) == {"A", "A/abliterated"}
    r = M.rates_from_summary(s)
    assert r[["checkpoint", "variant"]].drop_duplicates().values.tolist() == [["A", "original"], ["A", "abliterated"]]
