"""The ladders figure: one tidy table per source (a run's aggregate summary, the reference's published files), one
panel per ladder on a shared axis, and the aggregate notebook drawing it only when given other ladders."""
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from safety_study import aggregate as A, cli
from safety_study import figures as F
from safety_study.importers import import_files
from safety_study.core import ABLITERATED, HARMFUL, HARMLESS, ORIGINAL, StudyError, write_json, write_table
from safety_study.metrics import wilson_interval

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(os.environ.get("SAFETY_STUDY_REFERENCE_RESULTS") or ROOT.parent / "shared" / "reference-results")
# Tests marked `reference` read the reference study's published files; `make test-reference` (in .ci/run) runs them,
# `make test` leaves them out, and without the files they fail with a message rather than pass unseen.


def reference_folder() -> Path:
    assert REFERENCE.is_dir(), (f"the reference's published files are not at {REFERENCE}: set "
                                "SAFETY_STUDY_REFERENCE_RESULTS to the folder or run `make test` (which leaves them out)")
    return REFERENCE

TOY_RUNGS = ["toy-raw", "toy-score0", "toy-metatags", "toy-refusals", "toy-oracle"]
# embedding-judge counts of `safety-study run configs/toy.yaml` (refused of 50 per cell):
# rung: (original harmful, original harmless, abliterated harmful, abliterated harmless)
TOY_COUNTS = {"toy-raw": (8, 3, 8, 4), "toy-score0": (2, 4, 2, 4), "toy-metatags": (49, 4, 5, 3),
              "toy-refusals": (50, 3, 0, 2), "toy-oracle": (45, 1, 1, 1)}
SMOLLM2_RUNGS = ["instruct", "sysprompt", "refusals", "metatags", "refusals-quarter"]
CELLS = [(ORIGINAL, HARMFUL), (ORIGINAL, HARMLESS), (ABLITERATED, HARMFUL), (ABLITERATED, HARMLESS)]


def write_run(folder: Path, name: str, counts: dict, headline: str = "embedding") -> Path:
    """A run folder as `safety-study run` leaves it, as far as the ladder reads it: `study.json` (name, checkpoints,
    headline judge) and `aggregate/summary.csv` in the summary's format (rows in reverse, a second judge, repeat4)."""
    write_json({"name": name, "checkpoints": [{"name": rung, "group": name, "pair": None} for rung in counts],
                "headline_judge": headline, "human_judges": []}, folder / "study.json")
    rows = [dict(model=rung if variant == ORIGINAL else f"{rung}/{variant}", label=label, refusal_judge=judge,
                 refused=k, not_refused=50 - k, total=50, repeat4=0.0)
            for rung, cells in counts.items() for (variant, label), refused in zip(CELLS, cells)
            for judge, k in ((headline, refused), ("regex_paper", 50 - refused))]
    write_table(pd.DataFrame(rows[::-1]), folder / "aggregate" / "summary.csv")
    return folder


@pytest.fixture
def toy_run(tmp_path) -> Path:
    return write_run(tmp_path / "toy", "toy", TOY_COUNTS)


@pytest.fixture
def smollm2_run(tmp_path) -> Path:
    counts = {rung: (30 + 4 * k, 2, 10 + 8 * k, 1) for k, rung in enumerate(SMOLLM2_RUNGS)}
    return write_run(tmp_path / "smollm2", "smollm2-135m", counts, headline="default")


def test_run_ladder_reads_the_toy_run_summary(toy_run):
    frame = F.run_ladder(toy_run)
    assert list(frame.columns) == F.LADDER_COLUMNS
    assert set(frame.ladder) == {"toy"} and set(frame.judge) == {"embedding"}
    rungs = frame.drop_duplicates("checkpoint")
    assert rungs.checkpoint.tolist() == TOY_RUNGS and rungs.order.tolist() == list(range(5))
    assert len(frame) == 5 * 4 and frame.n.tolist() == [50] * 20
    for rung, cells in TOY_COUNTS.items():
        for (variant, label), refused in zip(CELLS, cells):
            row = frame[(frame.checkpoint == rung) & (frame.variant == variant) & (frame.label == label)].iloc[0]
            low, high = wilson_interval(refused, 50)
            assert row.rate == refused / 50 and (row.ci_low, row.ci_high) == (float(low), float(high)), (rung, variant)
    assert F.run_ladder(toy_run, "renamed", judge="regex_paper").loc[0, "rate"] == 1 - 8 / 50


def test_run_ladder_on_a_folder_the_aggregate_step_wrote(tmp_path):
    "The summary the aggregate step writes (not a hand-made one) is what the adapter reads."
    run = A.demo_run(tmp_path / "demo")
    A.aggregate_dir(run, n_boot=20)
    frame = F.run_ladder(run)
    rates = pd.read_csv(run / "aggregate" / "rates.csv")
    rates = rates[rates.judge == "embedding"]
    assert frame.drop_duplicates("checkpoint").checkpoint.tolist() == ["Unfiltered", "Filtered", "Filtered + Refusals"]
    merged = frame.merge(rates, on=["checkpoint", "variant", "label"], suffixes=("", "_run"))
    assert len(merged) == len(frame) == 12
    np.testing.assert_allclose(merged[["rate", "ci_low", "ci_high"]].to_numpy(float),
                               merged[["rate_run", "ci_low_run", "ci_high_run"]].to_numpy(float), rtol=1e-12)
    assert (merged.n == merged.n_run).all()


def test_run_ladder_says_what_is_missing(toy_run, tmp_path):
    (toy_run / "aggregate" / "summary.csv").unlink()
    with pytest.raises(StudyError, match="aggregate the run first"):
        F.run_ladder(toy_run)
    with pytest.raises(StudyError, match="judges present"):
        F.run_ladder(write_run(tmp_path / "other", "toy", TOY_COUNTS), judge="llm")


def test_ladder_frame_without_intervals_gives_nan():
    rates = pd.DataFrame([dict(checkpoint=c, variant=v, label=lab, judge="j", rate=0.5)
                          for c in ("b", "a") for v, lab in CELLS])
    frame = F.ladder_frame(rates, "rates only", order=["a", "b"])
    assert frame.drop_duplicates("checkpoint").checkpoint.tolist() == ["a", "b"]
    assert frame[["ci_low", "ci_high", "n"]].isna().all().all()


def test_reference_adapter_on_made_up_files(tmp_path):
    "Files in the reference's formats (no ../shared needed): display names, `-ALB` spellings, the importer's table."
    files = A.demo_reference(tmp_path / "files")
    frame = F.reference_ladder(tmp_path / "files")
    assert frame.drop_duplicates("checkpoint").checkpoint.tolist() == ["SmolLM2", "Raw Data"]
    assert set(frame.judge) == {"ChatGPT5"} and set(frame.ladder) == {F.REFERENCE_LADDER}
    harmful = frame[frame.label == HARMFUL].set_index(["checkpoint", "variant"]).rate
    assert harmful.to_dict() == {("SmolLM2", ORIGINAL): 0.7, ("SmolLM2", ABLITERATED): 0.3,
                                 ("Raw Data", ORIGINAL): 0.92, ("Raw Data", ABLITERATED): 0.9}
    import_files(files[:1], tmp_path / "imported")
    pd.testing.assert_frame_equal(F.reference_ladder(tmp_path / "imported"), frame)


@pytest.mark.reference
def test_reference_ladder_from_the_published_files():
    "The SmolLM2-1.7B ladder of the published files, every rate as the published counts give it (50 + 50 prompts)."
    frame = F.reference_ladder(reference_folder())
    ladder = ["SmolLM2", "Raw Data", "Score 0", "Score 0 + Rephrase", "Score 0 + Rephrase + Metatags",
              "Score 0 + Rephrase + Refusals", "Safety Oracle"]
    assert frame.drop_duplicates("checkpoint").checkpoint.tolist() == ladder
    assert frame.drop_duplicates("checkpoint").order.tolist() == list(range(7))
    assert len(frame) == 7 * 4 and set(frame.n) == {50} and set(frame.judge) == {"ChatGPT5"}
    published = pd.read_csv(REFERENCE / "model_comparison_all_summary_renamed.csv")
    published = published[published.refusal_judge == "ChatGPT5"]
    alb = published.model.str.contains(r"-\s*ALB\s*$")
    published = published.assign(checkpoint=published.model.map(lambda m: re.sub(r"\s*-\s*ALB\s*$", "", m)),
                                 variant=np.where(alb, ABLITERATED, ORIGINAL))
    m = frame.merge(published, on=["checkpoint", "variant", "label"], how="left")
    assert m.total.notna().all(), m[m.total.isna()]
    np.testing.assert_array_equal(m.rate.to_numpy(float), (m.refused / (m.refused + m.not_refused)).to_numpy(float))
    assert ((m.ci_low <= m.rate) & (m.rate <= m.ci_high)).all()
    smol = frame[(frame.checkpoint == "SmolLM2") & (frame.label == HARMFUL)].set_index("variant").rate
    assert (smol[ORIGINAL], smol[ABLITERATED]) == (0.7, 0.3)


@pytest.fixture
def three_ladders(toy_run, smollm2_run, tmp_path) -> pd.DataFrame:
    A.demo_reference(tmp_path / "reference")
    return pd.concat([F.run_ladder(toy_run), F.run_ladder(smollm2_run), F.reference_ladder(tmp_path / "reference")],
                     ignore_index=True)


def test_plot_ladders_one_panel_per_ladder_on_one_axis(three_ladders, tmp_path):
    import matplotlib.pyplot as plt
    fig = F.plot_ladders(three_ladders)
    axes = fig.axes
    assert len(axes) == 3
    assert [ax.get_title().split("\n")[0] for ax in axes] == ["toy", "smollm2-135m", F.REFERENCE_LADDER]
    assert len({ax.get_ylim() for ax in axes}) == 1
    low, high = axes[0].get_ylim()
    assert low <= 0 and 1 <= high <= 1.1
    assert all(axes[0].get_shared_y_axes().joined(axes[0], ax) for ax in axes[1:])
    ticks = [[t.get_text().replace("-\n", "-").replace("\n", " ") for t in ax.get_xticklabels()] for ax in axes]
    assert ticks == [TOY_RUNGS, SMOLLM2_RUNGS, ["SmolLM2", "Raw Data"]]
    # the toy panel's harmful original line: the rates, left to right in ladder order
    original_harmful = [line for line in axes[0].lines if line.get_linestyle() == "-" and line.get_xdata()[0] < 0]
    assert [list(line.get_ydata()) for line in original_harmful] == [[TOY_COUNTS[r][0] / 50 for r in TOY_RUNGS]]
    assert len(axes[0].collections) == 4  # an error bar set per variant and label
    paths = F.save_figure(fig, "ladders", tmp_path / "figures")
    assert [p.name for p in paths] == ["ladders.png", "ladders.pdf"] and all(p.stat().st_size for p in paths)
    plt.close("all")


def test_plot_ladders_rejects_what_it_cannot_draw(three_ladders):
    import matplotlib.pyplot as plt
    with pytest.raises(StudyError, match="not in the ladder table"):
        F.plot_ladders(three_ladders, ladders=["nope"])
    with pytest.raises(StudyError, match="ci_low"):
        F.plot_ladders(three_ladders.drop(columns="ci_low"))
    assert F.plot_ladders(three_ladders.iloc[:0]).axes[0].texts[0].get_text() == "no ladder to show"
    plt.close("all")


def test_aggregate_notebook_draws_ladders_only_when_given(toy_run, tmp_path):
    "With other ladders the aggregate notebook writes ladders.png/pdf and ladders.csv; with the defaults, nothing."
    demo = A.demo_run(tmp_path / "demo")
    A.demo_reference(tmp_path / "reference")
    base = dict(run_dir=str(demo), n_boot=20)
    assert cli.main(["aggregate", str(demo), "--out", str(tmp_path / "with"), "--n-boot", "20",
                     "--compare", str(toy_run), "--reference", str(tmp_path / "reference")]) == 0
    A.run_study_notebook("aggregate", tmp_path / "without", base | dict(out_dir=str(tmp_path / "without")),
                         progress=False)
    assert (tmp_path / "with" / "figures" / "ladders.png").exists()
    assert (tmp_path / "with" / "figures" / "ladders.pdf").exists()
    ladders = pd.read_csv(tmp_path / "with" / "ladders.csv")
    assert list(dict.fromkeys(ladders.ladder)) == ["demo", "toy", F.REFERENCE_LADDER]
    without = tmp_path / "without"
    assert not list(without.rglob("ladders.*"))
    made = lambda out: sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if "ladders" not in p.name)
    assert made(tmp_path / "with") == made(without)  # the run's own tables and figures are the same either way
    nb = json.loads((without / "aggregate.ipynb").read_text())
    assert any("nothing to draw beside this one" in "".join(o.get("text", "")) for c in nb["cells"]
               for o in c.get("outputs", []))


def test_aggregate_names_a_missing_ladder_before_it_starts(toy_run, tmp_path, capsys):
    demo = A.demo_run(tmp_path / "demo")
    assert cli.main(["aggregate", str(demo), "--compare", str(tmp_path / "not-aggregated")]) != 0
    assert "aggregate that run first" in capsys.readouterr().err
    assert cli.main(["aggregate", str(demo), "--compare", str(toy_run), "--reference", str(tmp_path / "no")]) != 0
    assert "--reference" in capsys.readouterr().err and not (demo / "aggregate").exists()
