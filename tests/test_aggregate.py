"""The aggregate step end to end: papermill on imported files alone, the command, and failures."""
import json
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest

from safety_study import aggregate as A
from safety_study.cli import main
from safety_study.core import StudyError, write_json
from safety_study.importers import import_files
from safety_study.metrics import model_name, split_model

from _tolerance import fp64_approx

FIX = Path(__file__).parent / "fixtures"
KEY = ["model", "label", "refusal_judge"]
ALL_FILES = ["reference_summary.csv", "reference_wide.csv", "user_study_annotator_a.csv", "user_study_annotator_b.csv"]


@pytest.fixture(scope="module")
def imported_aggregate(tmp_path_factory):
    d = tmp_path_factory.mktemp("agg")
    import_files([FIX / f for f in ALL_FILES], d / "imported", model_names=FIX / "model_names.csv")
    rc = main(["aggregate", str(d / "imported"), "--out", str(d / "out"), "--figures", str(d / "figs"),
               "--n-boot", "200", "--headline-judge", "llm_judge"])
    assert rc == 0
    return d


def test_notebook_runs_on_imported_files_alone(imported_aggregate):
    out = imported_aggregate / "out"
    for name in ("aggregate.ipynb", "aggregate.html", "report.md", "summary.csv", "rates.csv", "agreement.csv",
                 "manifest.json"):
        assert (out / name).exists(), name
    nb = json.loads((out / "aggregate.ipynb").read_text())
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb["cells"])
    assert "Cohen" in (out / "aggregate.html").read_text()


def test_summary_counts_identical(imported_aggregate):
    ref = pd.read_csv(FIX / "reference_summary.csv")
    names = dict(pd.read_csv(FIX / "model_names.csv").values)
    ref["model"] = [model_name(names.get(ck, ck), var) for ck, var in map(split_model, ref.model)]
    ours = pd.read_csv(imported_aggregate / "out" / "summary.csv")
    m = ref.merge(ours, on=KEY, how="left", suffixes=("_ref", "_ours"))
    assert len(m) == len(ref) and m.total_ours.notna().all()
    for c in ("refused", "not_refused", "total"):
        assert (m[f"{c}_ref"] == m[f"{c}_ours"]).all(), c


def test_annotator_kappa_reported(imported_aggregate):
    out = imported_aggregate / "out"
    a = pd.read_csv(out / "agreement.csv")
    row = a[(a.judge_a == "human_1") & (a.judge_b == "human_2") & (a.label == "all") & (a.variant == "all")].iloc[0]
    assert row.kappa == fp64_approx(7 / 12) and row.agreement == fp64_approx(0.8)
    report = (out / "report.md").read_text()
    assert "Agreement between human annotators" in report and "0.583" in report and "0.800" in report


def test_figures_written_and_copied(imported_aggregate):
    for d in (imported_aggregate / "out" / "figures", imported_aggregate / "figs"):
        for name in ("refusal_rates", "abliteration_effect", "kappa", "judges_vs_humans"):
            img = mpimg.imread(d / f"{name}.png")
            assert img.shape[0] > 200 and img.shape[1] > 300, name
            assert (d / f"{name}.pdf").stat().st_size > 1000


def test_failing_notebook_keeps_earlier_outputs(tmp_path):
    run = A.demo_run(tmp_path / "run")
    out = tmp_path / "run" / "aggregate"
    out.mkdir()
    (out / "report.md").write_text("earlier report\n")
    with pytest.raises(StudyError, match="headline judge 'nope'"):
        A.run_aggregate(run, headline_judge="nope", progress=False, n_boot=50)
    assert (out / "report.md").read_text() == "earlier report\n"
    assert (out / "aggregate.failed.ipynb").exists()
    assert not list(out.glob(".aggregate.*"))


def test_load_run_partial_and_unannotated(tmp_path):
    run = A.demo_run(tmp_path / "run")
    study = json.loads((run / "study.json").read_text())
    study["checkpoints"].append({"name": "Not yet run", "group": "demo", "pair": None})
    write_json(study, run / "study.json")
    for f in (run / "human").glob("*.csv"): f.unlink()
    data = A.load_run(run)
    assert data["human_judges"] == [] and any("no verdicts yet" in n for n in data["notes"])
    assert any("Not yet run" in n for n in data["notes"])
    t = A.compute(data, n_boot=50)
    assert "judges_vs_humans" not in t and len(t["agreement"])


def test_annotator_files_in_run_dir_pair_with_judges(tmp_path):
    run = A.demo_run(tmp_path / "run")
    data = A.load_run(run)
    a = A.compute(data, n_boot=50)["agreement"]
    row = a[(a.judge_a == "embedding") & (a.judge_b == "human_1") & (a.label == "all") & (a.variant == "all")].iloc[0]
    assert row.n_items == 48  # 8 annotated prompts x 2 variants x 3 checkpoints, joined on the item keys
    with pytest.raises(StudyError, match="human_3"):
        A.load_run(run, human_judges=["human_1", "human_3"])


def test_not_a_run_dir(tmp_path):
    with pytest.raises(StudyError, match="neither study.json"):
        A.load_run(tmp_path)
    assert main(["aggregate", str(tmp_path / "missing")]) == 2


def test_study_notebook_is_found():
    assert A.study_notebook("aggregate").name == "aggregate.ipynb"
