"""How close each numeric comparison of the tests came to its tolerance.

The tolerances come from `safety_study.edits.rounding_bound` (k · eps · depth · max|reference|, derived in its
docstring) or from an exact fp64 claim; `within` asserts `measured ≤ bound` and `beyond` asserts that a broken
variant (a wrong edit, an unedited layer) lands above the bound, so the bound is strict enough to catch it. Each check
prints `margin <what> measured=… bound=… margin=…` (shown with `pytest -s`, and in the report of a failing test); with
$SAFETY_STUDY_MARGINS set, it also appends one JSON line per check to that file, with the test, the thread count and
the CPU kernel torch runs, so runs under several settings can be gathered into one table."""
import json
import os

import numpy as np

from safety_study.judge_llm import label_logprob_bound  # noqa: F401 (the bound of a label log-probability)


def _record(kind: str, what: str, measured: float, bound: float, margin: float):
    import torch
    print(f"margin {what} measured={measured:.3e} bound={bound:.3e} margin={margin:.3g}")
    path = os.environ.get("SAFETY_STUDY_MARGINS")
    if path:
        row = dict(kind=kind, test=os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0], check=what,
                   measured=measured, bound=bound, margin=margin, threads=torch.get_num_threads(),
                   kernel=torch.backends.cpu.get_cpu_capability())
        with open(path, "a") as f: f.write(json.dumps(row) + "\n")


def within(what: str, measured, bound) -> float:
    "Assert `measured ≤ bound`; record both and the margin bound / measured."
    measured, bound = float(measured), float(bound)
    margin = bound / measured if measured > 0 else float("inf")
    _record("tolerance", what, measured, bound, margin)
    assert measured <= bound, f"{what}: {measured:.3e} exceeds its bound {bound:.3e}"
    return margin


def beyond(what: str, measured, bound, factor: float = 1.0) -> float:
    "Assert `measured > factor · bound` (the negative control: a broken variant fails the check); record the ratio."
    measured, bound = float(measured), float(bound)
    ratio = measured / bound if bound > 0 else float("inf")
    _record("control", what, measured, bound, ratio)
    assert measured > factor * bound, f"{what}: {measured:.3e} is not above {factor:g} × the bound {bound:.3e}"
    return ratio


# A statistic computed in fp64 from counts (a rate, a kappa, an interval, a p-value) takes a few dozen rounded
# operations on values of order one, each within eps64/2 of itself: 64·eps64 (≈ 1.4e-14) of its size bounds the
# rounding, so anything further off is a wrong formula.
FP64_REL = 64 * float(np.finfo(np.float64).eps)


def fp64_approx(expected):
    "`pytest.approx` for an fp64 statistic of order one: relative and absolute FP64_REL."
    import pytest
    return pytest.approx(expected, rel=FP64_REL, abs=FP64_REL)
