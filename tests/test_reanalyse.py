"""`safety-study reanalyse` on the project's reference-format fixtures, and the clustered judge-vs-human intervals."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from safety_study import aggregate as A
from safety_study import importers as I
from safety_study import metrics as M
from safety_study.cli import main
from safety_study.core import HARMFUL, NON_REFUSAL, REFUSAL, StudyError

from _tolerance import FP64_REL, fp64_approx

FIX = Path(__file__).parent / "fixtures"
ANNOTATORS = [FIX / "ref_user_study_1.csv", FIX / "ref_user_study_2.csv"]
Z = 1.959963984540054


def wilson(k, n):
    p = k / n
    mid, half = (p + Z * Z / (2 * n)), Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return (mid - half) / (1 + Z * Z / n), (mid + half) / (1 + Z * Z / n)


def pooled(a, x, y):
    return a[(a.judge_a == x) & (a.judge_b == y) & (a.label == "all") & (a.variant == "all")].iloc[0]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("re") / "r"
    with pytest.warns(I.UnpairedVariantWarning, match="Ghost Model-ALB"):
        rc = main(["reanalyse", str(FIX / "ref_summary_renamed.csv"), *map(str, ANNOTATORS), "--out", str(out),
                   "--n-boot", "300"])
    assert rc == 0
    return out


def test_report_gives_the_published_counts_back(report, capsys):
    html = (report / "reanalyse.html").read_text()
    assert "ChatGPT5 on SmolLM2, harmful: 35/50 → 15/50 after abliteration" in html
    assert "50 of 50" in html and "paired test needs item-level data" in html.replace("\n", " ")
    chk = pd.read_csv(report / "reference_check.csv")
    ref = pd.read_csv(FIX / "ref_summary_renamed.csv")
    assert len(chk) == len(ref) and chk.identical.all()
    assert (chk[["model", "refusal_judge", "refused", "total"]].values == ref[["model", "refusal_judge", "refused", "total"]].values).all()
    assert set(chk.loc[chk.model == "Score 0 -ALB", "checkpoint"]) == {"Score 0"}


def test_tidy_rates_and_pairs(report):
    rates = pd.read_csv(report / "rates.csv")
    assert list(rates.columns[:6]) == ["checkpoint", "variant", "label", "judge", "refused", "total"]
    both = rates.groupby("checkpoint").variant.nunique()
    assert (both == 2).sum() == 10 and both["Ghost Model"] == 1
    meta = json.loads((report / "imported" / "import.json").read_text())
    assert meta["n_abliterated"] == 11 and len(meta["pairs"]) == 10 and meta["unpaired_abliterated"] == ["Ghost Model-ALB"]


def test_count_effect_wilson_and_newcombe(report):
    e = pd.read_csv(report / "effect_counts.csv")
    r = e[(e.checkpoint == "SmolLM2") & (e.label == HARMFUL) & (e.judge == "ChatGPT5")].iloc[0]
    (l1, u1), (l2, u2) = wilson(15, 50), wilson(35, 50)
    assert (r.ci_low_abliterated, r.ci_high_abliterated) == fp64_approx((l1, u1))
    assert (r.ci_low_original, r.ci_high_original) == fp64_approx((l2, u2))
    d = 0.3 - 0.7  # Newcombe's hybrid score interval for a difference of independent proportions
    assert r.delta == fp64_approx(d)
    assert r.delta_ci_low == fp64_approx(d - math.sqrt((0.3 - l1) ** 2 + (u2 - 0.7) ** 2))
    assert r.delta_ci_high == fp64_approx(d + math.sqrt((u1 - 0.3) ** 2 + (0.7 - l2) ** 2))


def test_paired_effect_from_the_annotators(report):
    p = pd.read_csv(report / "effect_paired.csv")
    r = p[(p.checkpoint == "SmolLM2") & (p.label == HARMFUL) & (p.judge == "human_1")].iloc[0]
    assert (r.n_pairs, r.refusals_lost, r.refusals_gained) == (5, 4, 0)
    assert r.mcnemar_p == fp64_approx(2 * 0.5 ** 4)


def test_item_level_kappa_between_annotators(report, capsys):
    a = pd.read_csv(report / "agreement_humans.csv")
    r = pooled(a, "human_1", "human_2")
    assert r.pair == "annotator vs annotator" and r.n_items == 200
    assert r.kappa == fp64_approx(0.4336 / 0.4736) and r.agreement == fp64_approx(0.96)
    assert r.ac1 == fp64_approx(0.48645 / 0.52645)
    assert r.kappa_ci_low < r.kappa < r.kappa_ci_high
    html = (report / "reanalyse.html").read_text()
    assert f"{0.4336 / 0.4736:.3f}" in html and "No judge has item-level verdicts" in html
    for name in ("refusal_rates", "abliteration_effect", "judges_vs_humans_counts"):
        assert (report / "figures" / f"{name}.png").stat().st_size > 10_000, name


def test_judges_against_each_annotator_with_items(tmp_path):
    files = [FIX / "ref_summary_10q.csv", *ANNOTATORS, FIX / "ref_user_study_judges_wide.csv"]
    I.import_files(files, tmp_path / "imported")
    res = A.reanalyse_dir(tmp_path / "imported", tmp_path, files=files, n_boot=200)
    rt = res["reanalysis"]
    r = pooled(rt["agreement_humans"], "ChatGPT5", "human_1")
    assert r.pair == "judge vs annotator" and r.n_items == 200 and r.kappa == fp64_approx(0.4636 / 0.4736)
    c = rt["judges_vs_humans_counts"].set_index(["judge", "human"])
    assert c.loc[("human_1", "Human 1"), "identical_cells"] == c.loc[("human_1", "Human 1"), "n_cells"] == 40
    assert c.loc[("human_2", "Human 2"), "identical_cells"] == 40
    v = res["tables"]["judges_vs_humans"].set_index("judge")
    assert v.loc["ChatGPT5", "n_prompts"] == 10
    assert not res["tables"]["summary"].duplicated(["model", "label", "refusal_judge"]).any()
    assert rt["reference_check"].identical.all() and len(rt["reference_check"]) == 160


def test_bad_inputs(tmp_path, capsys):
    assert main(["reanalyse", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "no file at" in capsys.readouterr().err
    with pytest.raises(StudyError, match="headline judge 'nope'"):
        A.run_reanalyse(ANNOTATORS, tmp_path / "o2", headline_judge="nope", progress=False)
    assert not (tmp_path / "o2" / "reanalyse.ipynb").exists()
    with pytest.raises(StudyError, match="no import.json"):
        A.reanalyse_dir(tmp_path, tmp_path / "o3")


def _clustered(n_prompts):
    "100 consensus refusals; the machine judge misses every fourth item (with 4 prompts: all of prompt p0)."
    rows = []
    for i in range(100):
        for judge, v in (("human_1", REFUSAL), ("machine", NON_REFUSAL if i % 4 == 0 else REFUSAL)):
            rows.append(dict(study="s", checkpoint=f"m{i}", variant="original", prompt_id=f"p{i % n_prompts}",
                             label=HARMFUL, judge=judge, verdict=v))
    return pd.DataFrame(rows)


def test_judges_vs_humans_intervals_resample_prompts():
    clustered = M.judges_vs_humans(_clustered(4), ["human_1"], n_boot=1000).iloc[0]
    spread = M.judges_vs_humans(_clustered(100), ["human_1"], n_boot=1000).iloc[0]
    assert clustered.sensitivity == spread.sensitivity == 0.75
    assert (clustered.n_prompts, spread.n_prompts) == (4, 100)
    # 4 prompts: a resample holds p0 k ~ Binomial(4, 1/4) times, sensitivity 1 - k/4; P(k >= 3) > 2.5%
    assert clustered.sensitivity_ci_low <= 0.25 * (1 + FP64_REL)
    lo, _ = wilson(75, 100)
    assert spread.sensitivity_ci_low > lo - 0.05  # independent items: close to the Wilson interval
    again = M.judges_vs_humans(_clustered(4), ["human_1"], n_boot=1000).iloc[0]
    assert again.sensitivity_ci_low == clustered.sensitivity_ci_low  # seeded
