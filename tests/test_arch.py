"""Every tested architecture: writers found, the edit removes the direction from every residual write,
hook ablation equals the weight edit, and the norm-preserving edit is exact."""
import copy

import pytest
import torch

from safety_study.arch import TINY_CONFIGS, get_arch, tiny_model, effective_direction
from safety_study.abliterate import check_equivalence, residual_check
from safety_study.edits import EditSpec, abliterate_model, unit_direction
from safety_study.core import StudyError

torch.set_num_threads(1)
ARCHS = sorted(TINY_CONFIGS)


@pytest.fixture(scope="module", params=ARCHS)
def model(request):
    return request.param, tiny_model(request.param, layers=3, seed=1)


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
    assert rep.leftover.max() <= 1e-5
    ru = unit_direction(r)
    for w in arch.writers:
        u = effective_direction(m, w, r, arch)
        V = _vectors(m, w.name, w.layout)
        if w.layer >= 1:
            assert (u @ V).norm() / (u @ before[w.name]).norm() <= 1e-5, (mt, w.name)
        else:
            assert torch.equal(V, before[w.name]), (mt, w.name)  # layer 0 skipped
    for e in arch.embeddings:
        assert (m.get_submodule(e.name).weight.double() @ ru).abs().max() < 1e-5
    # the residual stream itself: each edited layer's update and, with embeddings edited, its input are ⟂ r̂
    rc = residual_check(m, r)
    assert rc[rc.layer >= 1].update_along.max() < 1e-4, (mt, rc)
    assert rc[rc.layer == 0].input_along.max() < 1e-4, (mt, rc)
    assert rc[rc.layer == 0].update_along.max() > 1e-3  # the unedited layer still writes along r̂


def test_hooks_equal_weight_edit(model):
    mt, m = model
    r = torch.randn(64, generator=torch.Generator().manual_seed(4))
    eq = check_equivalence(m, r, spec=EditSpec(skip_begin=1))
    assert eq["passes"] and eq["max_abs_diff"] <= 1e-4, (mt, eq)
    assert eq["ablation_effect"] > 1e-3  # the comparison is not vacuous


def test_norm_preserving_exact(model):
    mt, m = model
    m = copy.deepcopy(m)
    r = torch.randn(64, generator=torch.Generator().manual_seed(5))
    arch = get_arch(m)
    norms = {w.name: _vectors(m, w.name, w.layout).norm(dim=0) for w in arch.writers if w.layer >= 1}
    rep = abliterate_model(m, r, EditSpec(norm_preserving=True))
    assert rep.leftover.max() <= 1e-6
    for w in arch.writers:
        if w.layer < 1: continue
        V = _vectors(m, w.name, w.layout)
        u = effective_direction(m, w, r, arch)
        assert (u @ V).abs().max() / V.norm(dim=0).max() <= 1e-6
        assert ((V.norm(dim=0) / norms[w.name]) - 1).abs().max() <= 1e-6, (mt, w.name)


def test_post_norm_architectures_need_effective_direction():
    # a naive edit with r̂ itself leaves the direction in a Gemma-2 residual write: the adapter's post-norm handling matters
    m = tiny_model("gemma2", layers=2, seed=2)
    r = unit_direction(torch.randn(64))
    w = get_arch(m).writers[1]
    W = m.get_submodule(w.name).weight.data
    W -= torch.outer(r.float(), r.float() @ W)
    rc = residual_check(m, r)
    assert rc[rc.layer == 1].update_along.max() > 1e-3


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
    assert (one - d.harmful_mean[:, -1]).abs().max() < 1e-4, mt
    inputs = chat_inputs(tk, safe)
    with torch.no_grad():
        base = m(**inputs).logits
        with addition_hooks(m, d.mean_diff(2) * 10, 2):
            steered = m(**inputs).logits
    assert (base - steered).abs().max() > 1e-3
