"""The nbdev rhythm of the reworked notebooks: every export followed by examples or tests, no long runs of exports.

An *export cell* is a code cell with `#| export` (or `exports`, `exporti`). An *example cell* is any other code cell
that does something: not empty, not `#| default_exp`, not only imports. A *run* is a sequence of export cells with
no markdown or other non-empty code cell between them.

Add a notebook to `RHYTHM_NOTEBOOKS` once it is reworked. `python tests/test_rhythm.py nbs/NN_name.ipynb ...`
prints the numbers of any notebook.
"""
from __future__ import annotations
import json, re, sys
from pathlib import Path

import pytest

NBS = Path(__file__).resolve().parents[1] / "nbs"
RHYTHM_NOTEBOOKS = ["02_config", "04_toy", "10_arch", "12_directions", "13_selection", "13b_scoring", "15_pipeline",
                    "21_judge_base", "22_judge_rules", "23_judge_classifier", "24_judge_llm", "25_judge_api",
                    "26_judge_human", "26b_judge_paper", "27_judges", "31_figures", "40_runner"]
MIN_EXAMPLES_PER_EXPORT = 1.5
MAX_EXPORT_RUN = 3
EXPORT_DIRECTIVES = {"export", "exports", "exporti"}
# each figure function of `31_figures` is drawn in a cell that keeps its image
FIGURE_FUNCTIONS = ["rate_heatmaps", "effect_bars", "kappa_heatmap", "human_agreement_plot", "layer_profile"]


def directives(source: str) -> list[str]:
    "The `#|` directives at the top of a cell, e.g. ['export']."
    found = []
    for line in source.splitlines():
        match = re.match(r"\s*#\|\s*(\S+)", line)
        if match:
            found.append(match.group(1))
        elif line.strip():
            break
    return found


def code_lines(source: str) -> list[str]:
    "The lines of a cell that are neither blank nor comments (directives included)."
    return [line for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]


def is_export(cell: dict) -> bool:
    return cell["cell_type"] == "code" and bool(EXPORT_DIRECTIVES & set(directives(_source(cell))))


def is_example(cell: dict) -> bool:
    "A code cell that runs an example or a test: not an export, not empty, not `default_exp`, not only imports."
    if cell["cell_type"] != "code" or is_export(cell):
        return False
    source = _source(cell)
    lines = code_lines(source)
    if not lines or "default_exp" in directives(source):
        return False
    return not all(re.match(r"(from \S+ )?import ", line) for line in lines)


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def rhythm(cells: list[dict]) -> dict:
    "Export cells, example cells, examples per export and the longest run of export cells."
    exports = examples = run = longest = 0
    for cell in cells:
        if is_export(cell):
            exports += 1
            run += 1
            longest = max(longest, run)
            continue
        if cell["cell_type"] == "code" and not code_lines(_source(cell)):
            continue  # an empty code cell separates nothing
        run = 0
        examples += is_example(cell)
    return dict(exports=exports, examples=examples, per_export=examples / max(exports, 1), longest_run=longest)


def notebook_rhythm(path) -> dict:
    return rhythm(json.loads(Path(path).read_text())["cells"])


def _cell(kind: str, source: str) -> dict:
    return {"cell_type": kind, "source": source, "metadata": {}, **({"outputs": []} if kind == "code" else {})}


def test_counts_a_run_of_exports_with_tests_at_the_end():
    "The old shape of `10_arch`: exports one after another, the checks after all of them."
    cells = [_cell("code", "#| default_exp arch"), _cell("code", "from fastcore.test import test_eq")]
    cells += [_cell("code", f"#| export\ndef f{k}(): return {k}") for k in range(4)]
    cells += [_cell("code", ""), _cell("code", "#| export\nX = 1"), _cell("markdown", "## Checks")]
    cells += [_cell("code", "test_eq(f0(), 0)"), _cell("code", "# a comment only")]
    test_counts = rhythm(cells)
    assert test_counts == dict(exports=5, examples=1, per_export=0.2, longest_run=5), test_counts


def test_markdown_and_examples_break_runs():
    cells = [_cell("code", "#|export\na = 1"), _cell("markdown", "why b"), _cell("code", "#| exports\nb = 2"),
             _cell("code", "b"), _cell("code", "import json"), _cell("code", "#| exporti\nc = 3"),
             _cell("code", "assert c == 3")]
    assert rhythm(cells) == dict(exports=3, examples=2, per_export=2 / 3, longest_run=1), rhythm(cells)


@pytest.mark.parametrize("name", RHYTHM_NOTEBOOKS)
def test_rhythm(name):
    counts = notebook_rhythm(NBS / f"{name}.ipynb")
    assert counts["per_export"] >= MIN_EXAMPLES_PER_EXPORT, (
        f"nbs/{name}.ipynb: {counts['examples']} example/test cells for {counts['exports']} exports "
        f"({counts['per_export']:.2f} per export); add an example or a test_eq after the exports")
    assert counts["longest_run"] <= MAX_EXPORT_RUN, (
        f"nbs/{name}.ipynb: {counts['longest_run']} export cells in a row; put a sentence of why or an example "
        f"between them (at most {MAX_EXPORT_RUN})")


def test_figures_are_shown():
    cells = json.loads((NBS / "31_figures.ipynb").read_text())["cells"]
    shown = {name for cell in cells if cell["cell_type"] == "code" and not is_export(cell)
             for name in FIGURE_FUNCTIONS if f"{name}(" in _source(cell)
             and any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))}
    assert shown == set(FIGURE_FUNCTIONS), f"nbs/31_figures.ipynb shows no image of {set(FIGURE_FUNCTIONS) - shown}"


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        counts = notebook_rhythm(arg)
        print(f"{arg}: exports={counts['exports']} examples={counts['examples']} "
              f"per_export={counts['per_export']:.2f} longest_run={counts['longest_run']}")
