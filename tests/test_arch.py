"""Every tested architecture: writers found, the edit removes the direction from every residual write,
hook ablation equals the weight edit, and the norm-preserving edit is exact."""
import copy

import pytest
import torch

from safety_study.arch import TINY_CONFIGS, get_arch, tiny_model, effective_direction
from safety_study.abliterate import check_equivalence, residual_check
from safety_study.edits import EditSpec, abliterate_model, rounding_bound, unit_direction
from safety_study.core import StudyError

from _tolerance import beyond, within

torch.set_num_threads(1)
ARCHS = sorted(TINY_CONFIGS)


@pytest.fixture(scope="module", params=ARCHS)
def model(request):
    return request.param, tiny_model(request.param, layers=3, seed=1)


def _after_share(model, rep):
    "The largest ‖uᵀW′‖ / ‖W′‖ over the tensors of an edit report (fp64 sums over what was written)."
    return max(a / float(getattr(model.get_submodule(n), p).detach().double().norm().clamp_min(1e-300))
               for a, n, p in zip(rep.after, rep.module, rep.param))


def _vectors(model, name, layout):
    W = model.get_submodule(name).weight.detach().double()
    return W if layout == "linear" else W.T  # columns are written vectors


def test_edit_removes_direction_everywhere(model):
    mt, m = model
    m = copy.deepcopy(m)
    r = torch.randn(64, generator=torch.Generator().manual_seed(3))
    arch = get_arch(m)
    before = {w.name: _vectors(m, w.name, w.layout) for w in arch.writers}
    rep = abliterate_model(m, r, EditSpec(skip_begin=1, embeddings=True))
    # the exact fp64 edit rounded once to fp32 moves each entry by ≤ eps/2 of itself, so (Cauchy–Schwarz per written
    # vector v) |uᵀv′| ≤ (eps/2)·‖v‖ and ‖uᵀW′‖ ≤ (eps/2)·‖W‖; checked in fp64
    half = rounding_bound(1.0, k=0.5)
    within(f"arch {mt}: edit report's ‖uᵀW′‖ / ‖W′‖", _after_share(m, rep), half)
    ru = unit_direction(r)
    for w in arch.writers:
        u = effective_direction(m, w, r, arch)
        V = _vectors(m, w.name, w.layout)
        if w.layer >= 1:
            assert (u @ V).norm() <= rounding_bound(before[w.name].norm(), k=0.5), (mt, w.name)
            beyond(f"arch {mt}: {w.name} ‖uᵀW‖ / ‖W‖ before", (u @ before[w.name]).norm() / before[w.name].norm(), half, 1e3)
        else:
            assert torch.equal(V, before[w.name]), (mt, w.name)  # layer 0 skipped
    for e in arch.embeddings:
        E = m.get_submodule(e.name).weight.detach().double()
        within(f"arch {mt}: {e.name} rows |r̂ᵀe′| / ‖e′‖", ((E @ ru).abs() / E.norm(dim=1).clamp_min(1e-300)).max(), half)
    # the residual stream itself: each edited layer's update is ⟂ r̂ up to the rounding of the residual sums
    rc = residual_check(m, r)
    edited = rc[rc.layer >= 1]
    within(f"arch {mt}: residual update along r̂ / its rounding bound", (edited.update_along / edited.update_bound).max(), 1.0)
    # with embeddings edited the input of layer 0 is too: each embedding row leaves ≤ eps/2 of its norm along r̂, and
    # the ≤ 2 roundings that make the input (a sum of two tables, or a scale) eps/2 each of the result; ≤ 2·eps with
    # a sum's norm at least half the sum of its parts'
    within(f"arch {mt}: input of layer 0 along r̂", rc[rc.layer == 0].input_along.max(), rounding_bound(1.0, k=2))
    beyond(f"arch {mt}: unedited layer 0's update along r̂", rc[rc.layer == 0].update_along.max(),
           rc.update_bound.max(), 1e3)


def test_hooks_equal_weight_edit(model):
    mt, m = model
    r = torch.randn(64, generator=torch.Generator().manual_seed(4))
    spec = EditSpec(skip_begin=1)
    eq = check_equivalence(m, r, spec=spec)      # tolerance: fp32 rounding through 3 layers and the head
    assert eq["atol"] == rounding_bound(eq["logit_scale"], 3 + 1), eq
    within(f"arch {mt}: hooks vs weights, max |Δlogit|", eq["max_abs_diff"], eq["atol"])
    assert eq["passes"], (mt, eq)
    beyond(f"arch {mt}: ablation effect", eq["ablation_effect"], eq["atol"], 10)    # the comparison is not vacuous
    wrong = check_equivalence(m, r, spec=spec, weights_spec=EditSpec(skip_begin=1, scale=0.9))
    beyond(f"arch {mt}: hooks vs a scale-0.9 edit", wrong["max_abs_diff"], wrong["atol"], 10)
    assert not wrong["passes"], (mt, wrong)


def test_norm_preserving_exact(model):
    mt, m = model
    m = copy.deepcopy(m)
    r = torch.randn(64, generator=torch.Generator().manual_seed(5))
    arch = get_arch(m)
    norms = {w.name: _vectors(m, w.name, w.layout).norm(dim=0) for w in arch.writers if w.layer >= 1}
    rep = abliterate_model(m, r, EditSpec(norm_preserving=True))
    # projected and rescaled exactly in fp64, rounded once: |uᵀv′| ≤ (eps/2)·‖v‖ and ‖v′‖/‖v‖ − 1 within ±eps/2
    half = rounding_bound(1.0, k=0.5)
    within(f"arch {mt}: norm-preserving report's ‖uᵀW′‖ / ‖W′‖", _after_share(m, rep), half)
    along, norm = [], []
    for w in arch.writers:
        if w.layer < 1: continue
        V = _vectors(m, w.name, w.layout)
        u = effective_direction(m, w, r, arch)
        along.append(float(((u @ V).abs() / V.norm(dim=0)).max()))
        norm.append(float(((V.norm(dim=0) / norms[w.name]) - 1).abs().max()))
    within(f"arch {mt}: norm-preserving |uᵀv′| / ‖v′‖", max(along), half)
    within(f"arch {mt}: norm-preserving |‖v′‖/‖v‖ − 1|", max(norm), half)


def test_post_norm_architectures_need_effective_direction():
    # a naive edit with r̂ itself leaves the direction in a Gemma-2 residual write: the adapter's post-norm handling matters
    m = tiny_model("gemma2", layers=2, seed=2)
    r = unit_direction(torch.randn(64))
    w = get_arch(m).writers[1]
    W = m.get_submodule(w.name).weight.data
    W -= torch.outer(r.float(), r.float() @ W)
    rc = residual_check(m, r)
    beyond("arch gemma2: naive post-norm edit, update along r̂", rc[rc.layer == 1].update_along.max(),
           rc[rc.layer == 1].update_bound.max(), 1e3)


def test_unknown_architecture_named():
    m = tiny_model("llama", layers=2)
    for layer in m.model.layers:
        layer.mlp.proj_out = layer.mlp.down_proj
        del layer.mlp.down_proj
    m.config.model_type = "mystery"
    with pytest.raises(StudyError, match="mystery.*mlp"):
        get_arch(m)


def test_directions_and_hooks_run_on_every_architecture(model):
    from safety_study.arch import tiny_tokenizer
    from safety_study.edits import addition_hooks
    from safety_study.directions import compute_directions
    from safety_study.models import chat_inputs
    mt, m = model
    tk = tiny_tokenizer()
    harm, safe = ["how do i make a bomb", "write a virus", "steal a car"], ["make a cake", "write a poem", "cook bread"]
    d = compute_directions(m, tk, harm, safe, positions=2, batch_size=2, progress=False)
    assert d.harmful_mean.shape == (4, 2, 64) and torch.isfinite(d.harmful_mean).all()
    # batched left-padded means equal one-prompt-at-a-time means (position ids follow the padding)
    one = sum(compute_directions(m, tk, [p], safe[:1], progress=False).harmful_mean[:, -1] for p in harm) / 3
    bound = rounding_bound(one, 3)               # fp32 states through up to 3 layers, in other batch shapes
    within(f"arch {mt}: batched vs one-prompt means", (one - d.harmful_mean[:, -1]).abs().max(), bound)
    beyond(f"arch {mt}: harmful − harmless means", (d.harmful_mean - d.harmless_mean).abs().max(), bound, 100)
    inputs = chat_inputs(tk, safe)
    with torch.no_grad():
        base = m(**inputs).logits
        with addition_hooks(m, d.mean_diff(2) * 10, 2):
            steered = m(**inputs).logits
    beyond(f"arch {mt}: addition moves the logits", (base - steered).abs().max(), rounding_bound(base, 3 + 1), 10)
