"""`safety-study reanalyse` on the project's reference-format fixtures, and the clustered judge-vs-human intervals."""
import json
import math
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from safety_study import aggregate as A
from safety_study import importers as I
from safety_study import metrics as M
from safety_study.cli import main
from safety_study.core import HARMFUL, HARMLESS, NON_REFUSAL, REFUSAL, SUMMARY_COLUMNS, StudyError

from _tolerance import FP64_REL, fp64_approx

FIX = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parent.parent
REFERENCE_RESULTS = Path(os.environ.get("SAFETY_STUDY_REFERENCE_RESULTS") or ROOT.parent / "shared" / "reference-results")
REFERENCE_CODE = Path(os.environ.get("SAFETY_STUDY_REFERENCE_CODE") or ROOT.parent / "shared" / "reference-code")
SUBSET = "model_comparison_10q_with_llm_and_humans_summary_corrected.csv"  # the file its plotting.ipynb correlates
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


# --- the reference's agreement statistic: correlations of stacked counts -------------------------------------------

# refused of 10 per (model, label) cell; "fixed" refuses everything, "broken" misses cell (C, harmless)
MADE_UP = {"human_1": [9, 1, 7, 0, 10, 2], "human_2": [8, 1, 7, 1, 10, 3], "regex": [6, 0, 5, 0, 9, 0],
           "fixed": [10] * 6, "broken": [9, 2, 6, 1, 10]}
CELLS = [(m, lab) for m in "ABC" for lab in (HARMFUL, HARMLESS)]


def made_up_summary(shuffle: bool = True) -> pd.DataFrame:
    rows = [(m, lab, judge, r, 10 - r, 10) for judge, counts in MADE_UP.items() for (m, lab), r in zip(CELLS, counts)]
    s = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return s.sample(frac=1, random_state=0).reset_index(drop=True) if shuffle else s


def stacked(a: str, b: str):
    "Independently of the package: refused then not-refused counts over the cells both raters counted."
    n = min(len(MADE_UP[a]), len(MADE_UP[b]))
    vec = lambda r: np.array(MADE_UP[r][:n] + [10 - x for x in MADE_UP[r][:n]], float)
    return vec(a), vec(b)


def spearman(x, y):
    return np.corrcoef(pd.Series(x).rank(), pd.Series(y).rank())[0, 1]  # Pearson r of the mid-ranks


def test_count_correlations_on_a_made_up_summary():
    c = A.count_correlations(made_up_summary(shuffle=False)).set_index(["rater_a", "rater_b"])
    pairs = [("human_1", "human_2"), ("human_2", "human_1"), ("regex", "human_1"), ("fixed", "human_1"),
             ("broken", "human_1")]
    assert c.index.tolist() == [p for p in pairs if p != ("human_2", "human_1")]  # one row per unordered pair
    assert c.comparison.tolist() == ["annotator vs annotator"] + ["judge vs annotator"] * 3
    for a, b in c.index:
        x, y = stacked(a, b)
        r = c.loc[(a, b)]
        assert (r.n_cells, r.n_values) == (len(x) // 2, len(x))
        assert r.pearson_r == fp64_approx(np.corrcoef(x, y)[0, 1]), (a, b)
        assert r.spearman_rho == fp64_approx(spearman(x, y)), (a, b)
        if a != "fixed":
            h = len(x) // 2
            assert r.pearson_r_refused == fp64_approx(np.corrcoef(x[:h], y[:h])[0, 1])
            assert r.spearman_rho_refused == fp64_approx(spearman(x[:h], y[:h]))
    assert c.loc[("broken", "human_1"), "n_cells"] == 5
    fixed = c.loc[("fixed", "human_1")]
    assert np.isnan(fixed.pearson_r_refused) and np.isnan(fixed.spearman_rho_refused)  # constant: undefined
    assert fixed.pearson_r == fp64_approx(np.corrcoef(*stacked("fixed", "human_1"))[0, 1])
    shuffled = A.count_correlations(made_up_summary()).set_index(["rater_a", "rater_b"])  # same pairs, same values
    pd.testing.assert_frame_equal(shuffled.loc[c.index], c)


def test_count_correlations_stack_and_pairs():
    cells, x, y = A.stacked_counts(made_up_summary(), "regex", "human_1")
    assert cells.index.tolist() == CELLS
    assert x.tolist() == MADE_UP["regex"] + [10 - r for r in MADE_UP["regex"]]
    assert y.tolist() == MADE_UP["human_1"] + [10 - r for r in MADE_UP["human_1"]]
    s = made_up_summary().replace({"regex": "ChatGPT5", "fixed": "GPT-oss", "broken": "judge"})
    c = A.count_correlations(s)
    among = c[c.comparison == "judge vs judge"]  # the reference's heatmap judges present: ChatGPT5, GPT-oss
    assert among[["rater_a", "rater_b"]].values.tolist() == [["ChatGPT5", "GPT-oss"]]
    c = A.count_correlations(s, humans=[], panel=["ChatGPT5", "judge", "human_2"])
    assert c[["rater_a", "rater_b"]].values.tolist() == [["ChatGPT5", "judge"], ["ChatGPT5", "human_2"],
                                                          ["judge", "human_2"]]
    c = A.count_correlations(s, reference="ChatGPT5", humans=["human_1", "human_2"], panel=[])
    assert c.rater_b.tolist()[1:] == ["ChatGPT5"] * 4


def test_count_correlations_bad_inputs():
    s = made_up_summary()
    with pytest.raises(StudyError, match=r"missing column\(s\) \['not_refused'\]"):
        A.count_correlations(s.drop(columns="not_refused"))
    with pytest.raises(StudyError, match=r"human rater\(s\) \['Human 3'\] not in the summary table's judges"):
        A.count_correlations(s, humans=["Human 3"])
    with pytest.raises(StudyError, match="reference rater \\['nobody'\\]"):
        A.count_correlations(s, reference="nobody")
    with pytest.raises(StudyError, match="panel rater"):
        A.count_correlations(s, panel=["regex", "ChatGPT5"])
    with pytest.raises(StudyError, match="'broken' and 'human_1' counted 5 .* at least 6 are needed"):
        A.count_correlations(s, min_cells=6)
    one_cell = s[(s.model == "A") & (s.label == HARMFUL)]
    with pytest.raises(StudyError, match="counted 1 \\(model, label\\) cell"):
        A.count_correlations(one_cell)
    with pytest.raises(StudyError, match="at least two raters"):
        A.count_correlations(s[s.refusal_judge == "regex"])
    with pytest.raises(StudyError, match="'refused' must hold counts"):
        A.count_correlations(s.assign(refused=s.refused.astype(object).where(s.index != 3, "many")))
    with pytest.raises(StudyError, match="appear more than once"):
        A.count_correlations(pd.concat([s, s.head(1)]))
    with pytest.raises(StudyError, match="need a summary table"):
        A.count_correlations(s.to_dict("records"))


def test_reanalyse_writes_the_count_correlations(report, tmp_path):
    "Published counts only: the 50 + 50 summary's judges among themselves, the annotators' 5 + 5 items never mixed in."
    c = pd.read_csv(report / "count_correlations.csv")
    assert set(c.comparison) == {"judge vs judge"} and set(c.rater_a) | set(c.rater_b) == {"regex", "ChatGPT5",
                                                                                            "SmolLM2"}
    html = (report / "reanalyse.html").read_text()
    assert "correlation of stacked counts" in html and "count_correlations.csv" in html
    files = [FIX / "ref_summary_10q.csv", *ANNOTATORS]
    I.import_files(files, tmp_path / "imported")
    rt = A.reanalyse_dir(tmp_path / "imported", tmp_path, files=files, n_boot=50)["reanalysis"]
    hh = rt["count_correlations"].set_index(["rater_a", "rater_b"]).loc[("Human 1", "Human 2")]
    pub = pd.read_csv(FIX / "ref_summary_10q.csv")
    side = lambda j: pub[pub.refusal_judge == j].sort_values(["model", "label"])
    x, y = (np.concatenate([side(j).refused, side(j).not_refused]) for j in ("Human 1", "Human 2"))
    assert hh.comparison == "annotator vs annotator" and hh.n_cells == 40
    assert hh.pearson_r == fp64_approx(np.corrcoef(x, y)[0, 1])
    assert "agreement_humans" in rt  # the item-level κ beside it, from the annotator files
    lines = A._reanalyse_lines(tmp_path)
    assert f"stacked-count correlation Human 1 vs Human 2: Pearson r {hh.pearson_r:.3f}" in "\n".join(lines)


class _Tables(HTMLParser):
    "The rows (lists of cell texts) of every HTML table in a notebook output."
    def __init__(self):
        super().__init__()
        self.rows, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr": self.rows.append([])
        elif tag in ("td", "th"): self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(self._cell.strip().replace("\xa0", ""))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None: self._cell += data


def _html_tables(notebook: Path) -> list[list[dict]]:
    "Every HTML table printed by a code cell of `notebook`: a list of {header: text} rows per table."
    tables = []
    for cell in json.loads(notebook.read_text())["cells"]:
        for out in cell.get("outputs", []):
            html = "".join(out.get("data", {}).get("text/html", []))
            if "<table" not in html: continue
            p = _Tables()
            p.feed(html)
            rows = [r for r in p.rows if r]
            tables.append([dict(zip(rows[0], r)) for r in rows[1:]])
    return tables


def published_correlations(notebook: Path) -> list[tuple]:
    "(rater, against, our column, printed text) of each stacked and refused-only correlation the notebook printed."
    ours = lambda name: re.sub(r"^Human (\d+)$", r"human_\1", name)  # its `Human 1` is this package's human_1
    column = {("both", "pearson"): "pearson_r", ("both", "spearman"): "spearman_rho",
              ("refused", "pearson"): "pearson_r_refused", ("refused", "spearman"): "spearman_rho_refused"}
    found = []
    for table in _html_tables(notebook):
        if table and {"metric", "correlation", "value"} <= set(table[0]):  # Human 1 vs Human 2
            found += [("human_1", "human_2", column[r["metric"], r["correlation"]], r["value"]) for r in table
                      if (r["metric"], r["correlation"]) in column]
        elif table and {"refusal_judge", "both_pearson"} <= set(table[0]):  # each judge vs Human 1
            found += [(ours(r["refusal_judge"]), "human_1", col, r[f"{kind}_{how}"]) for r in table
                      for (kind, how), col in column.items()]
    return found


def _matches(ours: float, printed: str) -> bool:
    "Equal at the precision printed (half a unit of its last decimal); nan where the reference printed nan."
    if printed.lower() == "nan": return bool(np.isnan(ours))
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(ours - float(printed)) <= 0.5 * 10 ** -decimals * (1 + 1e-9)


@pytest.mark.reference
def test_count_correlations_reproduce_the_reference_notebook(tmp_path):
    "Every stacked-count correlation printed in the reference's plotting.ipynb, from `safety-study reanalyse`."
    assert REFERENCE_RESULTS.is_dir(), (f"the reference's published files are not at {REFERENCE_RESULTS}: set "
                                        "SAFETY_STUDY_REFERENCE_RESULTS to the folder or run `make test`")
    notebook = REFERENCE_CODE / "plotting.ipynb"
    assert notebook.is_file(), (f"the reference's plotting.ipynb is not at {notebook}: set SAFETY_STUDY_REFERENCE_CODE "
                                "to the folder of its code or run `make test` (which leaves this test out)")
    published = published_correlations(notebook)
    assert main(["reanalyse", str(REFERENCE_RESULTS / SUBSET), "--out", str(tmp_path / "r"), "--n-boot", "50"]) == 0
    c = pd.read_csv(tmp_path / "r" / "count_correlations.csv")
    pair = {frozenset((r.rater_a, r.rater_b)): r for r in c.itertuples()}
    raters = {x for p in published for x in p[:2]}
    assert raters == set(c.rater_a) | set(c.rater_b), "the printed tables name the raters of the summary file"
    assert all(len(v.split(".")[-1]) >= 3 for *_, v in published if v != "nan")  # printed to at least 3 decimals
    wrong = [(a, b, col, v, getattr(pair[frozenset((a, b))], col)) for a, b, col, v in published
             if not _matches(getattr(pair[frozenset((a, b))], col), v)]
    assert not wrong, f"{len(wrong)} of {len(published)} printed correlations not reproduced: {wrong}"
    assert all(pair[frozenset((a, b))].n_cells == 40 for a, b, *_ in published)
