"""The real checkpoint, offline: SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576, tied embeddings, a chat template
with a default system turn) from its Q4_1 GGUF, end to end — conversion, bad files, directions, selection and its
resume, the weight edit against the hooks, generation with the real template, and the `abliterate` command.

`make test-real` runs these (`pytest -m real`); the GGUF comes from `make fetch-smollm2`. The module converts the GGUF
once into a fresh cache folder and every test uses that conversion."""
import copy
import dataclasses
import json
import math
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from safety_study import abliterate, cli, selection
from safety_study.abliterate import check_equivalence, residual_check
from safety_study.core import StudyError, file_sha256
from safety_study.directions import Directions, compute_directions
from safety_study.edits import LEFTOVER_TOL, EditSpec, abliterate_model, edit_plan, rounding_bound
from safety_study.generate import generate_responses
from safety_study.models import chat_inputs, check_gguf, load_causal_lm, load_tokenizer, model_path
from safety_study.prompts import default_prompts, split_prompts
from safety_study.selection import SelectionSpec, read_selection_table, select_direction

from _tolerance import beyond, within

pytestmark = pytest.mark.real
torch.set_num_threads(1)
N_LAYERS, HIDDEN = 30, 576


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    "A fresh, empty conversion cache ($SAFETY_STUDY_CACHE) for the whole module."
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAFETY_STUDY_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def converted(cache, smollm2_gguf):
    "The GGUF converted once, through the cache path that `load_causal_lm` takes."
    assert not (cache / "gguf").exists()
    return Path(model_path(str(smollm2_gguf)))


@pytest.fixture(scope="module")
def smol(converted):
    "(model, tokenizer) of the converted folder, fp32 on the CPU."
    model, tok = load_causal_lm(converted, dtype="float32", device="cpu")
    return model, tok


@pytest.fixture(scope="module")
def split():
    "(harmful, harmless, harmful_val, harmless_val) from the default prompts, seeded as the command draws them."
    sp = split_prompts(default_prompts(), 16, 8, seed=0)
    get = lambda s, lab: sp[(sp.split == s) & (sp.label == lab)].prompt.tolist()  # noqa: E731
    return get("direction", "harmful"), get("direction", "harmless"), get("eval", "harmful"), get("eval", "harmless")


@pytest.fixture(scope="module")
def dirs(smol, split):
    model, tok = smol
    return compute_directions(model, tok, split[0], split[1], progress=False)


# ---------------------------------------------------------------------------------------------- GGUF conversion

def test_gguf_conversion_manifest_and_plain_reload(converted, cache, smollm2_gguf):
    folder = converted
    assert str(folder).startswith(str(cache / "gguf"))
    sha = file_sha256(smollm2_gguf)
    man = json.loads((folder / "manifest.json").read_text())
    assert man["gguf_sha256"] == sha and folder.name.endswith(sha[:12])
    assert man["architecture"] == "llama" and man["dtype"] == "float32" and man["gguf_file"] == smollm2_gguf.name
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    # the converted folder is an ordinary checkpoint: plain transformers loads it, no gguf involved
    m = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder)
    cfg = m.config
    assert (cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size) == ("llama", N_LAYERS, HIDDEN)
    assert not hasattr(cfg, "quantization_config")
    assert m.get_output_embeddings().weight is m.get_input_embeddings().weight  # tied, as in the GGUF
    assert 130e6 < sum(p.numel() for p in m.parameters()) < 140e6
    assert "<|im_start|>" in tok.chat_template
    # a second request finds the conversion by the file's hash and does not convert again
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert Path(model_path(str(smollm2_gguf))) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in (cache / "gguf").iterdir()] == [folder.name]


def test_gguf_tokenizer_matches_reference_tokens(smol):
    _, tok = smol
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
    # SmolLM2's template adds its default system turn and ends with the assistant header
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    assert tok.convert_ids_to_tokens(tok.eos_token_id) == "<|im_end|>"


def test_bad_gguf_inputs(tmp_path, smollm2_gguf, cache):
    truncated = tmp_path / "truncated.gguf"
    with open(smollm2_gguf, "rb") as f: truncated.write_bytes(f.read(1 << 20))
    with pytest.raises(StudyError, match="truncated or corrupt"): check_gguf(truncated)
    with pytest.raises(StudyError, match="truncated or corrupt"): load_causal_lm(str(truncated))
    foreign = tmp_path / "notes.gguf"
    foreign.write_text("these are not model weights\n")
    with pytest.raises(StudyError, match="not a GGUF file"): load_causal_lm(str(foreign))
    with pytest.raises(StudyError, match="no GGUF file"): load_causal_lm(str(tmp_path / "missing.gguf"))
    assert not any("truncated" in p.name or "notes" in p.name for p in (cache / "gguf").iterdir())  # nothing half-written


# ---------------------------------------------------------------------------------------------- directions

def test_directions_on_smollm2(smol, dirs, split, tmp_path):
    model, tok = smol
    assert dirs.harmful_mean.shape == (N_LAYERS + 1, 1, HIDDEN) and dirs.n_harmful == dirs.n_harmless == 16
    assert torch.isfinite(dirs.harmful_mean).all() and torch.isfinite(dirs.harmless_mean).all()
    assert dirs.meta["state_n"] == "pre-final-norm" and dirs.meta["model_type"] == "llama"
    # the last prompt token is always "\n" after "assistant": layer 0 sees no difference
    assert float(dirs.mean_diff(0).norm()) == 0.0
    with pytest.raises(StudyError, match="zero"): dirs.direction(0)
    norms = dirs.norms().set_index("layer").diff_norm
    assert (norms.loc[1:] > 0).all() and norms.loc[N_LAYERS // 2] > norms.loc[1]
    # batching does not change the means: one prompt at a time gives the same
    one = compute_directions(model, tok, split[0][:3], split[1][:3], batch_size=1, progress=False)
    many = compute_directions(model, tok, split[0][:3], split[1][:3], batch_size=16, progress=False)
    # the same fp32 states through up to 30 layers, in other batch shapes (padding, kernels): rounding only
    bound = rounding_bound(one.harmful_mean, N_LAYERS)
    within("directions: harmful means, batch 1 vs 16", (one.harmful_mean - many.harmful_mean).abs().max(), bound)
    # what the means are for, harmful − harmless, is far above it: a prompt read at a padded place would show
    beyond("directions: harmful − harmless means", (one.harmful_mean - one.harmless_mean).abs().max(), bound, 100)
    # the direction of a middle layer separates held-out harmful from harmless prompts
    layer = N_LAYERS // 2
    held = compute_directions(model, tok, split[2], split[3], progress=False)
    r = dirs.direction(layer).double()
    assert float(held.harmful_mean[layer, -1] @ r) > float(held.harmless_mean[layer, -1] @ r)
    # save → load round trip
    back = Directions.load(dirs.save(tmp_path / "d.safetensors"))
    assert torch.equal(back.harmful_mean, dirs.harmful_mean) and back.meta["model_type"] == "llama"


# ---------------------------------------------------------------------------------------------- selection

def spy_scores(real, calls, kill_after=None):
    "A stand-in for `score_candidate` that records (layer, score) for each score it computes, killed after `kill_after`."
    def spy(*a, which=selection.SCORES, row=None, **kw):
        todo = [w for w in which if row is None or math.isnan(row[w])]
        if todo and (row is None or selection.scorable(row)) and kill_after is not None and len(calls) >= kill_after:
            raise RuntimeError("killed during selection")
        out = real(*a, which=which, row=row, **kw)
        if selection.scorable(out): calls.extend((a[2], w) for w in todo)
        return out
    return spy


@pytest.fixture(scope="module")
def full_selection(smol, dirs, split):
    "The full scan over all 31 candidates with 8 + 8 validation prompts, packed scoring, no table."
    model, tok = smol
    return select_direction(model, tok, dirs, split[2], split[3], spec=SelectionSpec(relax=True, scan="full"),
                            progress=False)


def test_packed_selection_equals_plain_forwards(smol, dirs, split, full_selection):
    model, tok = smol
    chosen, scores = full_selection
    # Packed rows with layer replay and plain batched forwards are the same fp32 computation through 30 layers and the
    # head, so their logits differ by at most δ = rounding_bound(logits, 31) at the scale of the first-token logits.
    # A refusal score log m − log(1 − m) is a difference of two log-sum-exps of log-softmax values (each moved ≤ 2δ):
    # it moves ≤ 4δ, and so does a mean over prompts. KL = Σ p (log p − log q) moves ≤ 4δ + 2δ Σ p |log p − log q|
    # ≤ 2δ (2 + KL + √(2 KL)) (p log(q/p) ≤ q − p and Pinsker), at first order in δ.
    with torch.no_grad():
        logits = model(**chat_inputs(tok, split[2] + split[3])).logits[:, -1]
    delta = rounding_bound(logits, N_LAYERS + 1)
    assert scores.attrs["scoring"] == "packed" and len(scores) == N_LAYERS + 1
    plain_chosen, plain = select_direction(model, tok, dirs, split[2], split[3],
                                           spec=SelectionSpec(relax=True, packed=False, scan="full"), progress=False)
    assert plain.attrs["scoring"] == "plain"
    finite = plain.bypass_score.notna()
    assert finite.sum() == N_LAYERS                    # layer 0 has a zero difference: NaN scores, kept
    assert scores.bypass_score.notna().equals(finite)
    kl = float(plain.kl.max())
    for c, bound in (("bypass_score", 4 * delta), ("induce_score", 4 * delta), ("kl", 2 * delta * (2 + kl + math.sqrt(2 * kl)))):
        within(f"selection: packed vs plain {c}", (scores[c] - plain[c]).abs().max(), bound)
        # the candidates' own scores spread far wider: a packed row that let prompts see each other would show
        beyond(f"selection: spread of {c} over candidates", plain[c].max() - plain[c].min(), bound, 10)
    assert (chosen.layer, chosen.position) == (plain_chosen.layer, plain_chosen.position)
    within("selection: packed vs plain base_bypass", abs(chosen.base_bypass - plain_chosen.base_bypass), 4 * delta)


def test_pruned_scan_makes_the_full_choice_from_fewer_scores(smol, dirs, split, full_selection):
    model, tok = smol
    full_chosen, full = full_selection
    chosen, pruned = select_direction(model, tok, dirs, split[2], split[3], spec=SelectionSpec(relax=True),
                                      progress=False)
    assert chosen.scan == "pruned" and len(pruned) == N_LAYERS + 1
    for k in ("layer", "position", "relaxed", "bypass_score", "induce_score", "kl"):
        assert getattr(chosen, k) == getattr(full_chosen, k), k
    assert pruned.chosen.tolist() == full.chosen.tolist()
    for c in selection.SCORES:                          # what the pruned scan computed is the full scan's number
        have = pruned[c].notna()
        assert pruned[c][have].tolist() == full[c][have].tolist(), c
    below = (pruned.layer < 0.8 * N_LAYERS) & (pruned.diff_norm > 0)
    assert pruned.bypass_score[below].notna().all() and pruned.bypass_score[~below].isna().all()
    n_pruned, n_full = sum(pruned.attrs["computed"].values()), sum(full.attrs["computed"].values())
    assert n_full == 3 * N_LAYERS and n_pruned < 0.7 * n_full, (n_pruned, n_full)


def test_selection_resumes_after_a_failure(smol, dirs, split, full_selection, tmp_path, monkeypatch):
    model, tok = smol
    _, full = full_selection
    table, real = tmp_path / "selection.parquet", selection.score_candidate
    spec = SelectionSpec(relax=True, scan="full")
    first, again = [], []
    monkeypatch.setattr(selection, "score_candidate", spy_scores(real, first, kill_after=12))
    with pytest.raises(RuntimeError, match="killed"):
        select_direction(model, tok, dirs, split[2], split[3], spec=spec, table=table, progress=False)
    kept, meta = read_selection_table(table)
    assert sorted(kept.layer) == [0, 1, 2, 3, 4] and meta["n_layers"] == N_LAYERS   # killed at candidate 5
    monkeypatch.setattr(selection, "score_candidate", spy_scores(real, again))
    chosen, resumed = select_direction(model, tok, dirs, split[2], split[3], spec=spec, table=table, progress=False)
    assert not set(first) & set(again)                               # nothing was scored twice
    assert sorted(set(first) | set(again)) == sorted((l, w) for l in range(1, N_LAYERS + 1) for w in selection.SCORES)
    assert chosen.resumed == 12 and resumed.attrs["resumed"] == 12     # scores read back
    cols = ["layer", "position", "diff_norm", "bypass_score", "induce_score", "kl", "passes", "chosen"]
    pd.testing.assert_frame_equal(resumed[cols], full[cols], check_exact=True)
    assert read_selection_table(table)[0]["chosen"].sum() == 1


# ---------------------------------------------------------------------------------------------- the edit

def _direction(dirs):
    return dirs.direction(N_LAYERS // 2)


def test_edit_leaves_nothing_of_the_direction(smol, dirs):
    model, tok = smol
    r = _direction(dirs)
    m = copy.deepcopy(model)
    report = abliterate_model(m, r, EditSpec())     # raises if an edit leaves more than LEFTOVER_TOL
    assert len(report) == 2 * (N_LAYERS - 1) and set(report.kind) == {"attn", "mlp"}
    assert report.leftover.max() <= LEFTOVER_TOL and (report.before > 0).all()
    u = r.double() / r.double().norm()
    before, after = dict(model.named_parameters()), dict(m.named_parameters())
    # the edit is exact in fp64 and rounded once to fp32: each entry moves by ≤ eps/2 of itself, so (Cauchy–Schwarz
    # per written vector) ‖uᵀW′‖ ≤ (eps/2)·‖W‖; checked in fp64, tensor by tensor, and for the report's ‖uᵀW′‖
    left, share, reported = [], [], []
    for (name, param, _, _, vdim, _, _), row in zip(edit_plan(model, r, EditSpec()), report.itertuples()):
        W0, W1 = (d[f"{name}.{param}"].detach().double() for d in (before, after))
        proj0, proj1 = (u @ W0 if vdim == 0 else W0 @ u), (u @ W1 if vdim == 0 else W1 @ u)
        assert row.module == name
        left.append(float(proj1.norm() / W0.norm())); share.append(float(proj0.norm() / W0.norm()))
        reported.append(row.after / float(W0.norm()))
    within("edit: ‖uᵀW′‖ / ‖W‖, worst tensor", max(left), rounding_bound(1.0, k=0.5))
    within("edit: the report's ‖uᵀW′‖ / ‖W‖, worst tensor", max(reported), rounding_bound(1.0, k=0.5))
    beyond("edit: ‖uᵀW‖ / ‖W‖ before the edit, least tensor", min(share), rounding_bound(1.0, k=0.5), 1e3)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"{n}.weight" for n, *_ in edit_plan(model, r, EditSpec())}  # nothing else moved
    assert not any(".layers.0." in k for k in changed)
    # each edited layer's update ⟂ r̂ up to the rounding of the residual sums (`residual_check`'s update_bound)
    rc = residual_check(m, r, tok).query("layer >= 1")
    worst = (rc.update_along / rc.update_bound).idxmax()
    within(f"edit: residual update along r̂ (layer {rc.layer[worst]})", rc.update_along[worst], rc.update_bound[worst])
    plain = residual_check(model, r, tok).query("layer >= 1")      # the unedited model writes r̂ in every layer
    least = (plain.update_along / plain.update_bound).idxmin()
    # every layer's write is at least 10x its rounding bound (the smallest, layer 26, was 83x with this prompt pool)
    beyond(f"edit: unedited residual update along r̂ (layer {plain.layer[least]})", plain.update_along[least],
           plain.update_bound[least], 10)


SPECS = {"default": EditSpec(), "embeddings": EditSpec(embeddings=True), "mlp-only": EditSpec(skip_begin=0, targets=("mlp",))}
spec_id = {v: k for k, v in SPECS.items()}.get


@pytest.mark.parametrize("spec", list(SPECS.values()), ids=list(SPECS))
def test_hooks_equal_the_edit_on_real_logits(smol, dirs, split, spec):
    model, tok = smol
    prompts = split[2][:2] + split[3][:2]
    res = check_equivalence(model, _direction(dirs), tok, prompts, spec=spec)
    # the default tolerance: fp32 rounding through 30 layers and the head, at the scale of the logits
    assert res["dtype"] == "float32" and res["atol"] == rounding_bound(res["logit_scale"], N_LAYERS + 1), res
    within(f"equivalence {spec_id(spec)}: hooks vs weights, max |Δlogit|", res["max_abs_diff"], res["atol"])
    assert res["passes"], res
    beyond(f"equivalence {spec_id(spec)}: ablation effect", res["ablation_effect"], res["atol"], 100)
    # a wrong edit, one layer short (the last), fails the same check
    wrong = check_equivalence(model, _direction(dirs), tok, prompts, spec=spec,
                              weights_spec=dataclasses.replace(spec, skip_end=spec.skip_end + 1))
    beyond(f"equivalence {spec_id(spec)}: edit one layer short", wrong["max_abs_diff"], wrong["atol"], 100)
    assert not wrong["passes"], wrong
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # the model itself untouched


# ---------------------------------------------------------------------------------------------- generation

SHORT = ["What is the capital of France? Answer with one word.", "What is 2 + 2? Answer with a number only.",
         "Say hello."]
HEADERS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")


def test_generation_with_the_real_chat_template(smol, split):
    model, tok = smol
    prompts = pd.DataFrame(dict(prompt=SHORT + split[2][:3] + split[3][:3]))
    out = generate_responses(model, tok, prompts, max_new_tokens=48, batch_size=4, progress=False)
    assert list(out.prompt) == list(prompts.prompt)
    for p, r, n in zip(out.prompt, out.raw_response, out.n_new_tokens):
        assert r.strip(), p
        assert p not in r and not r.lstrip().startswith(p[:20]), (p, r)            # the prompt is not echoed
        assert not any(h in r for h in HEADERS), r                                  # no template tokens
        assert not re.match(r"\s*(assistant|user|system)\s*\n", r), r               # no role header
        assert 0 < n <= 48
    short = out.iloc[:len(SHORT)]
    assert (short.finish == "eos").all(), short[["response", "finish"]]
    assert (short.n_new_tokens < 48).all()
    assert "paris" in short.response.iloc[0].lower() and "4" in short.response.iloc[1]
    # the response is exactly the new tokens up to the end-of-turn token
    ids = tok(short.raw_response.iloc[0], add_special_tokens=False)["input_ids"]
    assert len(ids) in (short.n_new_tokens.iloc[0] - 1, short.n_new_tokens.iloc[0])


# ---------------------------------------------------------------------------------------------- the command

def test_cli_abliterate_selects_saves_and_resumes(smollm2_gguf, cache, converted, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    argv = ["abliterate", str(smollm2_gguf), str(out), "--select", "--relax", "--n-direction", "16", "--n-val", "4"]
    real, first, again = selection.score_candidate, [], []
    monkeypatch.setattr(selection, "score_candidate", spy_scores(real, first, kill_after=7))
    with pytest.raises(RuntimeError, match="killed"): cli.main(argv)
    work = tmp_path / "out.partial"
    assert not out.exists() and (work / "directions.safetensors").exists()
    kept, _ = read_selection_table(work / "selection.parquet")
    assert len(kept) == N_LAYERS + 1 and int(kept.bypass_score.notna().sum()) == 7     # the pruned scan's first 7 scores
    monkeypatch.setattr(selection, "score_candidate", spy_scores(real, again))
    capsys.readouterr()
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert again and not set(first) & set(again)                    # only the missing scores were computed
    assert "read back from the last run" in printed and "resumed: 7 scores" in printed
    assert not work.exists()
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "manifest.json", "direction.safetensors",
            "selection.parquet", "directions.safetensors", "abliteration_report.csv"} <= names
    man = json.loads((out / "manifest.json").read_text())
    scores, _ = read_selection_table(out / "selection.parquet")
    assert len(scores) == N_LAYERS + 1 and scores.chosen.sum() == 1
    best = scores[scores.chosen].iloc[0]
    assert man["selected"] and (man["layer"], man["position"]) == (int(best.layer), int(best.position))
    assert Path(man["source"]["path"]) == converted.resolve() and man["edit"] == EditSpec().to_dict()
    # the folder is a plain checkpoint, and the saved direction is gone from its edited writers
    from safetensors.torch import load_file
    r = load_file(str(out / "direction.safetensors"))["direction"].double()
    r = r / r.norm()
    m = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    # eps/2 for the saved weight's rounding and eps/2 for the direction saved in fp32 (Cauchy–Schwarz for each)
    bound = rounding_bound(1.0, k=1)
    left = [float((r @ W).norm() / W.norm()) for W in (m.model.layers[i].mlp.down_proj.weight.detach().double()
                                                       for i in range(1, N_LAYERS))]
    within("command: ‖r̂ᵀW′‖ / ‖W′‖ of the saved down_proj, worst layer", max(left), bound)
    W0 = m.model.layers[0].mlp.down_proj.weight.detach().double()
    beyond("command: ‖r̂ᵀW‖ / ‖W‖ of layer 0 (not edited)", (r @ W0).norm() / W0.norm(), bound, 1e3)
    assert load_tokenizer(str(out)).chat_template is not None
    assert os.environ["SAFETY_STUDY_CACHE"] == str(cache)           # the command used this module's conversion
    assert abliterate.LEFTOVER_TOL == LEFTOVER_TOL


@pytest.fixture(scope="module")
def smol16(converted):
    "(model, tokenizer) of the converted folder in bf16, as the reference loads its models."
    return load_causal_lm(converted, dtype="bfloat16", device="cpu")


def test_paper_mean_is_the_reference_running_mean(smol16, split):
    """The habit `running_mean` on the real model: bit for bit the reference's procedure, written out from its
    description (the prompt's `hidden_states` at the last token, `m ← m + (x − m)/k` in bf16, one prompt at a
    time); the project's fp64 mean of the same states is not."""
    model, tok = smol16
    harm, safe = split[0][:6], split[1][:6]
    ours = compute_directions(model, tok, harm, safe, paper_mode=True, bf16_running_mean=True, progress=False)
    summed = compute_directions(model, tok, harm, safe, paper_mode=True, progress=False)
    for layer in (N_LAYERS, 18):
        mean = None
        for k, prompt in enumerate(harm, 1):
            with torch.no_grad():
                x = model(**chat_inputs(tok, [prompt]), output_hidden_states=True).hidden_states[layer][:, -1, :]
            mean = x.mean(0) if mean is None else mean + (x - mean).sum(0) / k
        assert torch.equal(ours.harmful_mean[layer, -1].to(torch.bfloat16), mean), layer
        assert not torch.equal(summed.harmful_mean[layer, -1].to(torch.bfloat16), mean), layer
    assert ours.meta["mean"] == "bf16 running"


def test_paper_edit_has_the_reference_bits(smol16, split):
    """`EditSpec.paper()` on the real bf16 model: every o_proj and down_proj of layers [1, 30) is the reference's
    bf16(W₃₂ − (r rᵀ)W₃₂) with the bf16-normalised direction as given; the fp64 arithmetic differs in a few entries."""
    model, tok = smol16
    dirs = compute_directions(model, tok, split[0][:6], split[1][:6], paper_mode=True, progress=False)
    r = dirs.direction(N_LAYERS, bf16=True)
    ours, fp64 = copy.deepcopy(model), copy.deepcopy(model)
    abliterate_model(ours, r, EditSpec.paper())
    abliterate_model(fp64, r, EditSpec.paper(arithmetic="fp64"))
    shares = []
    for i in range(1, N_LAYERS):
        for name in ("self_attn.o_proj", "mlp.down_proj"):
            w = model.get_submodule(f"model.layers.{i}.{name}").weight.data.to(torch.float32)
            want = (w - torch.matmul(torch.outer(r.float(), r.float()), w)).to(torch.bfloat16)
            assert torch.equal(ours.get_submodule(f"model.layers.{i}.{name}").weight, want), (i, name)
            shares.append((fp64.get_submodule(f"model.layers.{i}.{name}").weight != want).float().mean().item())
    assert torch.equal(ours.model.layers[0].self_attn.o_proj.weight, model.model.layers[0].self_attn.o_proj.weight)
    assert min(shares) > 0, shares


def test_two_habits_change_no_input_on_smollm2(smol, split):
    """`retokenize_prompt` and `judge_reads_reference` on SmolLM2: its tokenizer adds no special token to a templated
    prompt, and its template leaves a line "assistant", so the reference's cut of the decoded sequence is the answer.
    On a template that glues the role header to the prompt (Llama 3) the cut keeps the echoed prompt."""
    from safety_study.generate import reference_cut
    from safety_study.models import chat_token_rows
    model, tok = smol
    prompts = split[2][:3] + split[3][:3]
    assert chat_token_rows(tok, prompts, add_special_tokens=True) == chat_token_rows(tok, prompts)
    out = generate_responses(model, tok, pd.DataFrame({"prompt": prompts}), max_new_tokens=12, batch_size=6,
                             progress=False)
    assert [t for t in out.reference_text] == [r.strip() for r in out.response]
    glued = "systemCutting Knowledge Date: December 2023user\n\nHow do I pick a lock?assistant\n\nI can't help."
    assert reference_cut(glued) == glued and reference_cut("user\nq\nassistant\nI can't help.") == "I can't help."


def test_float16_generation_on_smollm2(smol, split):
    """`generation.dtype: float16` on the real model: the answers of its float16 copy, greedy, one prompt at a time,
    as the reference generates on CUDA; the float32 model itself is left as it was."""
    from safety_study.models import chat_token_rows
    model, tok = smol
    prompts = split[2][:2] + split[3][:2]
    before = model.lm_head.weight.detach().clone()
    out = generate_responses(model, tok, pd.DataFrame({"prompt": prompts}), max_new_tokens=16, batch_size=1,
                             progress=False, dtype="float16")
    half = copy.deepcopy(model).to(torch.float16)
    want = []
    for row in chat_token_rows(tok, prompts):
        ids = torch.tensor([row])
        new = half.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False,
                            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[0, len(row):].tolist()
        want.append(tok.decode([t for t in new if t != tok.eos_token_id], skip_special_tokens=True).strip())
    assert list(out.response) == want
    assert model.lm_head.weight.dtype == torch.float32 and torch.equal(model.lm_head.weight, before)
