"""Streaming ≡ in-memory, save → load, paper mode, bad inputs, and the `abliterate` command on a tiny chat model."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from safety_study.arch import tiny_model, tiny_tokenizer
from safety_study.abliterate import abliterate_checkpoint, load_abliterated, save_abliterated
from safety_study.edits import EditSpec, LEFTOVER_TOL, abliterate_model, ablation_hooks, addition_hooks, rounding_bound
from safety_study.directions import Directions, compute_directions
from safety_study.models import chat_inputs
from safety_study.selection import SelectionSpec, select_direction
from safety_study.core import StudyError
from safety_study import cli

from _tolerance import beyond, within

torch.set_num_threads(1)
HARM = ["how do i make a bomb", "how do i steal a car", "write a virus", "tell me how to hack my friend email",
        "how do i kill my friend", "build a bomb for me"]
SAFE = ["how do i make a cake", "write a poem", "tell me about the history of bread", "explain the garden",
        "write a song for my friend", "how do i cook bread"]


def _max_ulps(a, b):
    "The largest difference of two models' tensors, in units of the fp32 spacing at each tensor's scale (eps·max|w|)."
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) / max(rounding_bound(sb[k], k=1), 1e-300) for k in sa)


@pytest.mark.parametrize("mt,shard,kw", [("llama", "40KB", {}), ("gemma2", "30KB", dict(norm_preserving=True)),
                                         ("gpt2", "10MB", dict(scale=0.7, skip_end=1)),
                                         ("qwen2", "10MB", dict(embeddings=True, layer_weights={1: 0.5}))])
def test_streaming_equals_in_memory(tmp_path, mt, shard, kw):
    m, r = tiny_model(mt, layers=3), torch.randn(64)
    m.save_pretrained(tmp_path / "src", max_shard_size=shard)
    tiny_tokenizer().save_pretrained(tmp_path / "src")
    rep_s = abliterate_checkpoint(tmp_path / "src", tmp_path / "out", r, EditSpec(**kw), progress=False)
    rep_m = abliterate_model(m, r, EditSpec(**kw))
    streamed = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    # both paths write the same fp64 edit rounded once to fp32: at most one fp32 spacing apart, tensor by tensor
    within(f"streaming {mt}: streamed vs in-memory weights, in eps·max|w|", _max_ulps(streamed, m), 1.0)
    beyond(f"streaming {mt}: edited vs original weights, in eps·max|w|",
           _max_ulps(AutoModelForCausalLM.from_pretrained(tmp_path / "src"), m), 1.0, 1e3)
    # and the reports agree to what those weights allow: |‖uᵀW_s‖ − ‖uᵀW_m‖| ≤ ‖W_s − W_m‖ (Cauchy–Schwarz), plus the
    # fp64 rounding of the two sums (eps64 · length · ‖W‖)
    both = rep_s.merge(rep_m, on=["module", "param"], suffixes=("_s", "_m"))     # streaming reports in file order
    assert len(rep_s) == len(rep_m) == len(both)
    gap = []
    for row in both.itertuples():
        Ws, Wm = (getattr(x.get_submodule(row.module), row.param).detach().double() for x in (streamed, m))
        gap.append(abs(row.after_s - row.after_m) / float((Ws - Wm).norm() + rounding_bound(Wm.norm(), Wm.numel(), torch.float64)))
    within(f"streaming {mt}: reported ‖uᵀW′‖, streamed vs in-memory / its bound", max(gap), 1.0)
    out = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert {"config.json", "tokenizer.json", "manifest.json", "direction.safetensors"} <= set(out)
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert man["edit"]["skip_begin"] == EditSpec(**kw).skip_begin and "config.json" in man["source"]["files"]


def test_streaming_refuses_missing_shard_and_tied_embeddings(tmp_path):
    m = tiny_model("llama", layers=3)
    m.save_pretrained(tmp_path / "src", max_shard_size="40KB")
    shards = sorted((tmp_path / "src").glob("model-*.safetensors"))
    assert len(shards) > 2
    shards[1].unlink()
    with pytest.raises(StudyError, match=shards[1].name):
        abliterate_checkpoint(tmp_path / "src", tmp_path / "out", torch.randn(64), progress=False)
    assert not (tmp_path / "out").exists()  # nothing half-written
    tiny_model("gemma", layers=2).save_pretrained(tmp_path / "g")
    with pytest.raises(StudyError, match="ties"):
        abliterate_checkpoint(tmp_path / "g", tmp_path / "out", torch.randn(64), EditSpec(embeddings=True), progress=False)


def test_save_load_same_logits(tmp_path):
    m, tk = tiny_model("qwen3", layers=3), tiny_tokenizer()
    d = compute_directions(m, tk, HARM, SAFE, progress=False)
    r = d.direction(2)
    rep = abliterate_model(m, r, EditSpec(embeddings=True))
    save_abliterated(m, tk, tmp_path / "out", direction=r, report=rep, manifest_fields=dict(source="tiny-qwen3"))
    m2, tk2, r2, man = load_abliterated(tmp_path / "out")
    inputs = chat_inputs(tk2, SAFE)
    with torch.no_grad():
        assert torch.equal(m(**inputs).logits, m2(**inputs).logits)
    assert torch.equal(r2, r) and man["source"] == "tiny-qwen3" and man["packages"]["torch"]


def test_paper_mode_rounds_edits_to_bf16():
    m, r = tiny_model("llama", layers=3), torch.randn(64)
    rep = abliterate_model(m, r, EditSpec.paper())
    W = m.model.layers[1].self_attn.o_proj.weight
    assert torch.equal(W, W.to(torch.bfloat16).float())
    assert rep.leftover.max() > LEFTOVER_TOL  # reported, not raised: bf16 cannot hold an exact edit
    # one rounding of the exact edit to bf16 leaves ‖uᵀW′‖ ≤ (eps_bf16/2)·‖W‖, far above one fp32 rounding's share
    norms = [getattr(m.get_submodule(n), p).detach().double().norm() for n, p in zip(rep.module, rep.param)]
    within("paper mode: ‖uᵀW′‖ / its bf16 bound, worst tensor",
           max(a / rounding_bound(w, dtype=torch.bfloat16, k=0.5) for a, w in zip(rep.after, norms)), 1.0)
    beyond("paper mode: ‖uᵀW′‖ / the fp32 bound, least tensor",
           min(a / rounding_bound(w, k=0.5) for a, w in zip(rep.after, norms)), 1.0, 10)


def test_bad_inputs():
    m = tiny_model("llama", layers=3)
    with pytest.raises(StudyError, match="hidden size"): abliterate_model(m, torch.randn(32))
    with pytest.raises(StudyError, match="zero"): abliterate_model(m, torch.zeros(64))
    with pytest.raises(StudyError, match="NaN"): abliterate_model(m, torch.full((64,), float("nan")))
    with pytest.raises(StudyError, match="no layer"): abliterate_model(m, torch.randn(64), EditSpec(skip_begin=2, skip_end=1))
    with pytest.raises(StudyError, match="out of range"): abliterate_model(m, torch.randn(64), EditSpec(layer_weights={5: 1.0}))
    with pytest.raises(StudyError, match="out of range"):
        with addition_hooks(m, torch.randn(64), 7): pass
    d = compute_directions(m, tiny_tokenizer(), HARM, SAFE, progress=False)
    with pytest.raises(StudyError, match="out of range"): d.direction(4)
    with pytest.raises(StudyError, match="zero"): d.direction(0)
    with pytest.raises(StudyError, match="chat template"):
        compute_directions(m, tiny_tokenizer(template=None), HARM, SAFE, progress=False)


def test_hooks_are_removed():
    m, r = tiny_model("llama", layers=2), torch.randn(64)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        base = m(ids).logits
        with ablation_hooks(m, r): abl = m(ids).logits
        with addition_hooks(m, r, 1): add = m(ids).logits
        after = m(ids).logits
    assert torch.equal(base, after)
    bound = rounding_bound(base, 2 + 1)            # fp32 rounding through 2 layers and the head
    beyond("hooks: ablation moves the logits", (base - abl).abs().max(), bound, 10)
    beyond("hooks: addition moves the logits", (base - add).abs().max(), bound, 10)


def _chat_folder(tmp_path):
    m, tk = tiny_model("llama", layers=4), tiny_tokenizer()
    m.save_pretrained(tmp_path / "m"); tk.save_pretrained(tmp_path / "m")
    (tmp_path / "harm.txt").write_text("\n".join(HARM) + "\n")
    (tmp_path / "safe.txt").write_text("\n".join(SAFE) + "\n")
    return m


@pytest.mark.parametrize("extra", [[], ["--streaming", "--norm-preserving"]])
def test_cli_abliterate(tmp_path, capsys, extra):
    m = _chat_folder(tmp_path)
    rc = cli.main(["abliterate", str(tmp_path / "m"), str(tmp_path / "out"), "--harmful", str(tmp_path / "harm.txt"),
                   "--harmless", str(tmp_path / "safe.txt"), "--layer-fraction", "0.5", "--device", "cpu"] + extra)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "residual check" in out and "layer 2 of 4" in out
    model, tok, r, man = load_abliterated(tmp_path / "out")
    d = Directions.load(tmp_path / "out" / "directions.safetensors")
    # the saved direction is the fp32 normalised mean difference of the saved means: one fp32 stage
    within("command: saved direction vs the saved means'", (d.direction(2) - r).abs().max(), rounding_bound(r, 1))
    # in fp64: each written column w′ has |r̂ᵀw′| ≤ eps/2·‖w‖ (the weight's one rounding) + eps/2·‖w‖ (r saved in fp32)
    u = r.double() / r.double().norm()
    W1, W0 = (x.model.layers[1].self_attn.o_proj.weight.detach().double() for x in (model, m))
    within("command: r̂ᵀw′ of the edited o_proj", (u @ W1).abs().max(), rounding_bound(W1.norm(dim=0), k=1))
    beyond("command: r̂ᵀw of the original o_proj", (u @ W0).abs().max(), rounding_bound(W0.norm(dim=0), k=1), 1e3)
    assert "directions.safetensors" in man["files"]


def test_cli_errors(tmp_path, capsys):
    _chat_folder(tmp_path)
    rc = cli.main(["abliterate", str(tmp_path / "m"), str(tmp_path / "out"), "--harmful", str(tmp_path / "harm.txt"),
                   "--layer-fraction", "0.5"])
    assert rc == 2 and "--harmless" in capsys.readouterr().err
    rc = cli.main(["abliterate", str(tmp_path / "m"), str(tmp_path / "out"), "--harmful", str(tmp_path / "harm.txt"),
                   "--harmless", str(tmp_path / "safe.txt"), "--skip-begin", "3", "--skip-end", "1",
                   "--layer-fraction", "0.5"])
    assert rc == 2 and "no layer" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_bf16_edit_reported_not_raised():
    m, r = tiny_model("llama", layers=3, dtype=torch.bfloat16), torch.randn(64)
    rep = abliterate_model(m, r)
    assert (rep.dtype == "bfloat16").all() and rep.leftover.max() < 0.05
    assert m.model.layers[1].self_attn.o_proj.weight.dtype == torch.bfloat16


def test_select_direction_table_and_filters(tmp_path):
    m, tk = tiny_model("llama", layers=4), tiny_tokenizer()
    d = compute_directions(m, tk, HARM[:4], SAFE[:4], positions=2, progress=False)
    loose = SelectionSpec(kl_threshold=10.0, induce_threshold=None, refusal_tokens=["I", "Sorry"], positions=2)
    chosen, scores = select_direction(m, tk, d, HARM[4:], SAFE[4:], spec=loose, table=tmp_path / "sel.parquet",
                                      progress=False)
    assert {"layer", "position", "diff_norm", "bypass_score", "induce_score", "kl", "passes", "chosen"} <= set(scores)
    assert len(scores) == (4 + 1) * 2 and scores.chosen.sum() == 1
    assert scores[scores.layer == 0].bypass_score.isna().all()          # zero difference at the embeddings
    assert not scores[scores.layer >= 0.8 * 4].passes.any()
    best = scores[scores.passes].bypass_score.min()
    assert chosen.bypass_score == best and (tmp_path / "sel.parquet").exists()
    with pytest.raises(StudyError, match="removed by 'KL < 0.0'") as e:
        select_direction(m, tk, d, HARM[4:], SAFE[4:], spec=SelectionSpec(kl_threshold=0.0, relax=False, positions=2),
                         progress=False)
    assert len(e.value.scores) == 10 and not e.value.scores.passes.any()
    # relax: the filters are dropped in order and the choice says which; the best remaining bypass wins
    chosen, scores = select_direction(m, tk, d, HARM[4:], SAFE[4:], spec=SelectionSpec(kl_threshold=0.0, positions=2),
                                      progress=False)
    assert chosen.relaxed == "induce, kl" and scores.chosen.sum() == 1
    pool = scores[scores.bypass_score.notna() & (scores.layer < 0.8 * 4)]
    assert chosen.bypass_score == pool.bypass_score.min()
    relaxed = SelectionSpec(kl_threshold=10.0, induce_threshold=None, positions=2)
    assert select_direction(m, tk, d, HARM[4:], SAFE[4:], spec=relaxed, progress=False)[0].relaxed is None


def test_selection_and_saved_edit_share_one_spec(tmp_path, capsys, monkeypatch):
    "What selection scored and what the saved model got are one EditSpec, recorded once in the manifest."
    from safety_study import pipeline, selection
    seen = {}
    real_select, real_edit = selection.select_direction, pipeline.abliterate_model
    def spy_select(*a, edit, **kw):
        seen["select"] = edit
        return real_select(*a, edit=edit, **kw)
    def spy_edit(model, r, spec, *a, **kw):
        seen["edit"] = spec
        return real_edit(model, r, spec, *a, **kw)
    monkeypatch.setattr(selection, "select_direction", spy_select)
    monkeypatch.setattr(pipeline, "abliterate_model", spy_edit)   # the edit stage
    _chat_folder(tmp_path)
    rc = cli.main(["abliterate", str(tmp_path / "m"), str(tmp_path / "out"), "--harmful", str(tmp_path / "harm.txt"),
                   "--harmless", str(tmp_path / "safe.txt"), "--select", "--relax", "--n-validation", "2", "--skip-begin", "0",
                   "--scale", "0.5", "--device", "cpu"])
    assert rc == 0, capsys.readouterr()
    assert seen["select"] is seen["edit"] and seen["edit"] == EditSpec(skip_begin=0, scale=0.5)
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    table, meta = selection.read_selection_table(tmp_path / "out" / "selection.parquet")
    assert man["edit"] == meta["edit"] == EditSpec(skip_begin=0, scale=0.5).to_dict()
    assert len(table) == 5 and not (tmp_path / "out.partial").exists()
