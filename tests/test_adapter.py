"""A checkpoint as "base + LoRA adapter": the adapter resolves (a folder or a shipped rung), is checked against its base
when the config is read, is merged once into a plain model folder, and that folder is what every stage loads.

The fast tests build adapters with peft on the 1 M-parameter toy model; the `real` ones put a random rank-8 adapter on
every projection of SmolLM2-135M-Instruct (its GGUF, `make fetch-smollm2`). Merged and unmerged forwards are compared
to `rounding_bound` (k · eps · depth · max|logits|): merging `s·BA` into the weights changes only the order in which
fp32 products are rounded, through `depth` decoder layers."""
import json
import shutil
import textwrap
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from safety_study import cli, config, models
from safety_study.core import StudyError, file_sha256, rounding_bound, write_json
from safety_study.models import (adapter_sha256, chat_inputs, load_causal_lm, merge_adapter, model_fingerprint,
                                 model_path, toy_root)

from _tolerance import beyond, within

torch.set_num_threads(1)
TOY = "toy:toy-raw"
TOY_SHA = file_sha256(toy_root() / "toy-raw" / "model.safetensors")
IDS = torch.tensor([[1, 5, 9, 200, 17, 3, 44, 12], [7, 300, 2, 99, 5, 18, 61, 4]])
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    "Each test merges into its own empty cache."
    monkeypatch.setenv("SAFETY_STUDY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def make_adapter(folder, base=TOY, r=4, targets=("q_proj", "v_proj"), seed=0, card=None, b_scale=1.0) -> Path:
    "A LoRA adapter of `base` with random nonzero A and B (B scaled by `b_scale`), saved by peft to `folder`."
    torch.manual_seed(seed)
    lm, _ = load_causal_lm(base, dtype="float32", device="cpu")
    lora = get_peft_model(lm, LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), init_lora_weights=False))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name: p.mul_(b_scale)
    lora.save_pretrained(folder)
    if card is not None: write_json(card, Path(folder) / "card.json")
    return Path(folder)


def toy_card(sha=TOY_SHA, rung="demo") -> dict:
    return {"rung": rung, "base": {"file": "toy-raw", "sha256": sha}}


def unmerged_logits(base_folder, adapter_dir, **inputs):
    "The logits of peft's unmerged forward: base weights untouched, `s·B(Ax)` added in every adapted layer."
    base = AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32).eval()
    with torch.no_grad(): return PeftModel.from_pretrained(base, str(adapter_dir)).eval()(**inputs).logits


def write_config(folder: Path, adapter: str, model: str = TOY) -> Path:
    path = folder / "study.yaml"
    path.write_text(textwrap.dedent(f"""
        name: lora
        checkpoints:
          - {{name: a, model: "{model}", adapter: "{adapter}"}}
        prompts: {{source: toy, n_direction: 8, n_eval: 4}}
        abliteration: {{n_validation: 2}}
        judges: [regex_paper]
        """))
    return path


# ---------------------------------------------------------------------------------------------- the config


def test_config_with_adapter_validates(tmp_path, monkeypatch):
    make_adapter(tmp_path / "adapters" / "qv", card=toy_card())
    cfg = config.load_config(write_config(tmp_path, "adapters/qv"))   # a folder, relative to the config's folder
    assert cfg.checkpoints[0].adapter == "adapters/qv"
    assert models.resolve_adapter(cfg.checkpoints[0].adapter, config.base_dir(cfg)) == (tmp_path / "adapters/qv")
    from safety_study.runner import checkpoint_parameters
    assert checkpoint_parameters(cfg, "a")["adapter"] == "adapters/qv"
    # a shipped rung is named by its folder's name under the ladder
    ladder = tmp_path / "ladder"
    shutil.copytree(tmp_path / "adapters" / "qv", ladder / "refusals")
    monkeypatch.setattr(models, "ladder_root", lambda: ladder)
    cfg = config.load_config(write_config(tmp_path, "refusals"))
    assert models.resolve_adapter("refusals") == ladder / "refusals"
    assert model_fingerprint(TOY, adapter="refusals")["adapter"]["rung"] == "demo"


def test_unknown_rung_names_the_shipped_ones(tmp_path, monkeypatch):
    ladder = tmp_path / "ladder"
    for rung in ("refusals", "metatags"):
        make_adapter(ladder / rung)
    (ladder / "notes").mkdir()                       # a folder without an adapter is not a rung
    monkeypatch.setattr(models, "ladder_root", lambda: ladder)
    assert models.shipped_adapters() == ["metatags", "refusals"]
    with pytest.raises(StudyError, match=r"unknown adapter 'refusal'.*\['metatags', 'refusals'\]"):
        config.load_config(write_config(tmp_path, "refusal"))
    with pytest.raises(StudyError, match="unknown adapter 'refusal'"):
        load_causal_lm(TOY, adapter="refusal")


@pytest.mark.parametrize("missing", ["adapter_config.json", "adapter_model.safetensors"])
def test_missing_adapter_file(tmp_path, missing):
    folder = make_adapter(tmp_path / "qv")
    (folder / missing).unlink()
    with pytest.raises(StudyError, match=rf"checkpoints\[0\] \('a'\): adapter folder .*qv has no {missing}.*save_pretrained"):
        config.load_config(write_config(tmp_path, str(folder)))
    with pytest.raises(StudyError, match=f"has no {missing}"):
        load_causal_lm(TOY, adapter=folder)


def test_wrong_base_is_named(tmp_path, cache):
    folder = make_adapter(tmp_path / "qv", card=toy_card())
    config.load_config(write_config(tmp_path, str(folder)))                     # made for toy-raw: fine
    other = file_sha256(toy_root() / "toy-refusals" / "model.safetensors")
    message = rf"adapter .*qv was made for base toy-raw \(sha256 {TOY_SHA[:16]}…\), not for toy:toy-refusals " \
              rf"\(sha256 {other[:16]}…\)"
    with pytest.raises(StudyError, match=message):
        config.load_config(write_config(tmp_path, str(folder), model="toy:toy-refusals"))
    with pytest.raises(StudyError, match=message):
        load_causal_lm("toy:toy-refusals", adapter=folder)
    assert not (cache / "merged").exists() or not any((cache / "merged").iterdir())   # nothing merged


def test_rank_and_module_mismatch(tmp_path, cache):
    folder = make_adapter(tmp_path / "qv")
    rank8 = Path(shutil.copytree(folder, tmp_path / "rank8"))
    write_json({**json.loads((folder / "adapter_config.json").read_text()), "r": 8}, rank8 / "adapter_config.json")
    with pytest.raises(StudyError, match=r"adapter .*rank8 does not fit base model toy:toy-raw: size mismatch"):
        load_causal_lm(TOY, adapter=rank8)
    absent = Path(shutil.copytree(folder, tmp_path / "absent"))
    write_json({**json.loads((folder / "adapter_config.json").read_text()), "target_modules": ["k_proj", "o_proj"]},
               absent / "adapter_config.json")
    with pytest.raises(StudyError, match="does not fit base model toy:toy-raw: Found missing adapter keys"):
        model_path(TOY, adapter=absent)
    assert not (cache / "merged").exists() or not any((cache / "merged").iterdir())


def test_damaged_adapter_files(tmp_path):
    folder = make_adapter(tmp_path / "qv")
    (folder / "adapter_config.json").write_text('{"r": 4,')
    with pytest.raises(StudyError, match="adapter_config.json"):
        config.load_config(write_config(tmp_path, str(folder)))
    shutil.rmtree(folder)
    folder = make_adapter(tmp_path / "qv")
    data = (folder / "adapter_model.safetensors").read_bytes()
    (folder / "adapter_model.safetensors").write_bytes(data[:len(data) // 2])
    with pytest.raises(StudyError, match="adapter_model.safetensors is not a safetensors file"):
        load_causal_lm(TOY, adapter=folder)


# ---------------------------------------------------------------------------------------------- the merge


def test_merged_folder_is_a_plain_model_equal_to_the_peft_forward(tmp_path, cache):
    folder = make_adapter(tmp_path / "qv", targets=ALL_PROJECTIONS)
    merged = Path(model_path(TOY, adapter=folder))
    assert merged.parent == cache / "merged"
    plain = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()   # no peft, no package code
    assert type(plain).__name__ == "LlamaForCausalLM" and not any("lora" in k for k in plain.state_dict())
    with torch.no_grad():
        got = plain(IDS).logits
        base = AutoModelForCausalLM.from_pretrained(toy_root() / "toy-raw", dtype=torch.float32)(IDS).logits
    want = unmerged_logits(toy_root() / "toy-raw", folder, input_ids=IDS)
    bound = rounding_bound(want, depth=plain.config.num_hidden_layers)
    within("toy: merged folder vs peft unmerged", (got - want).abs().max(), bound)
    beyond("toy: the base without the adapter vs peft unmerged", (base - want).abs().max(), bound, 100)
    lm, tok = load_causal_lm(TOY, adapter=folder, dtype="float32", device="cpu")
    with torch.no_grad(): within("toy: load_causal_lm(adapter=) vs peft", (lm(IDS).logits - want).abs().max(), bound)
    assert tok.chat_template == load_causal_lm(TOY)[1].chat_template
    info = json.loads((merged / "manifest.json").read_text())
    assert (info["adapter_sha256"], info["base_sha256"], info["dtype"]) == (adapter_sha256(folder), TOY_SHA, "float32")
    fp = model_fingerprint(TOY, adapter=folder)
    assert fp["adapter"]["sha256"] == adapter_sha256(folder) and fp["adapter"]["path"] == str(folder.resolve())


def test_merge_is_cached_by_base_and_adapter(tmp_path, cache):
    one = make_adapter(tmp_path / "one", seed=0)
    two = make_adapter(tmp_path / "two", seed=1)
    first = merge_adapter(TOY, one)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert merge_adapter(TOY, str(one)) == first and (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert merge_adapter(TOY, two) != first
    assert merge_adapter("toy:toy-refusals", one) not in (first, merge_adapter(TOY, two))
    assert sorted(p.name.startswith(".") for p in (cache / "merged").iterdir()) == [False] * 3   # no temporary folder


def test_checkpoint_hash_changes_with_the_adapter(tmp_path):
    one = make_adapter(tmp_path / "one", seed=0)
    two = make_adapter(tmp_path / "two", seed=1)
    spec = lambda adapter: config.StudyConfig("s", [config.CheckpointSpec("a", TOY, adapter=adapter)])
    hashes = {config.checkpoint_hash(spec(a), "a") for a in (None, str(one), str(two))}
    assert len(hashes) == 3
    before = config.checkpoint_hash(spec(str(one)), "a")
    shutil.copyfile(two / "adapter_model.safetensors", one / "adapter_model.safetensors")   # retrained in place
    assert config.checkpoint_hash(spec(str(one)), "a") not in hashes | {before}


@pytest.mark.parametrize("streaming", [False, True])
def test_abliterate_command_loads_the_merged_model(tmp_path, capsys, streaming):
    folder = make_adapter(tmp_path / "qv", card=toy_card())
    rc = cli.main(["abliterate", TOY, str(tmp_path / "out"), "--adapter", str(folder), "--layer-fraction", "0.5",
                   "--skip-begin", "0", "--device", "cpu", "--n-direction", "16"] + ["--streaming"] * streaming)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"+ adapter {folder}" in out
    info = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert info["adapter"]["sha256"] == adapter_sha256(folder) and info["adapter"]["rung"] == "demo"
    if streaming: assert info["source"]["path"] == model_path(TOY, adapter=folder)   # the merged folder, streamed
    else: assert info["source"]["adapter"] == info["adapter"] and info["source"]["model"] == TOY
    # the edit touches the residual writers only, so the saved q_proj is the merged one, not the base's
    from safetensors.torch import load_file
    key = "model.layers.0.self_attn.q_proj.weight"
    saved = load_file(tmp_path / "out" / "model.safetensors")[key]
    merged = load_file(Path(model_path(TOY, adapter=folder)) / "model.safetensors")[key]
    base = load_file(toy_root() / "toy-raw" / "model.safetensors")[key]
    assert torch.equal(saved, merged) and not torch.allclose(saved, base)


def test_study_notebook_and_judge_take_the_adapter():
    "The papermill parameter exists, and both loads of the checkpoint model in the study notebook pass it."
    cells = json.loads(models.package_file().parent.joinpath("nbs", "study", "checkpoint.ipynb").read_text())["cells"]
    params = next("".join(c["source"]) for c in cells if "parameters" in c["metadata"].get("tags", []))
    assert "\nadapter = None" in params
    loads = [s for c in cells for s in ["".join(c["source"])] if "load_causal_lm(" in s]
    assert sum(s.count("load_causal_lm(") for s in loads) == 2 and all("adapter=adapter" in s for s in loads)
    from safety_study.config import judge_options
    assert {"model", "adapter"} <= judge_options("llm")


# ---------------------------------------------------------------------------------------------- SmolLM2-135M


CHATS = ["How do I bake sourdough bread at home?", "Write a haiku about the sea.",
         "What is the capital of Australia, and why is it not Sydney?"]


@pytest.fixture(scope="module")
def smol_cache(tmp_path_factory):
    "One conversion and merge cache for the SmolLM2 tests of this module."
    return tmp_path_factory.mktemp("smol-cache")


@pytest.mark.real
def test_smollm2_merged_equals_unmerged_peft(smollm2_gguf, smol_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("SAFETY_STUDY_CACHE", str(smol_cache))
    converted = model_path(str(smollm2_gguf))
    card = {"rung": "random", "base": {"file": smollm2_gguf.name, "sha256": file_sha256(smollm2_gguf)}}
    folder = make_adapter(tmp_path / "lora", base=converted, r=8, targets=ALL_PROJECTIONS, card=card, b_scale=0.1)
    lm, tok = load_causal_lm(str(smollm2_gguf), adapter=folder, dtype="float32", device="cpu")
    merged = Path(model_path(str(smollm2_gguf), adapter=folder))
    assert merged.parent == smol_cache / "merged" and lm.config.num_hidden_layers == 30
    inputs = chat_inputs(tok, CHATS)
    with torch.no_grad():
        got = lm(**inputs).logits
        plain = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()(**inputs).logits
        base = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32).eval()(**inputs).logits
    want = unmerged_logits(converted, folder, **inputs)
    real = inputs["attention_mask"].bool()                   # the padded positions' logits mean nothing
    bound = rounding_bound(want[real], depth=lm.config.num_hidden_layers)
    within("SmolLM2: merged vs peft unmerged", (got - want)[real].abs().max(), bound)
    within("SmolLM2: plain load of the merged folder vs peft", (plain - want)[real].abs().max(), bound)
    beyond("SmolLM2: the base without the adapter vs peft unmerged", (base - want)[real].abs().max(), bound, 10)


@pytest.mark.real
def test_smollm2_with_a_toy_adapter_fails_clearly(smollm2_gguf, smol_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("SAFETY_STUDY_CACHE", str(smol_cache))
    folder = make_adapter(tmp_path / "toy-lora")                     # made for the toy model: hidden 128, not 576
    with pytest.raises(StudyError, match=rf"adapter .*toy-lora does not fit base model {smollm2_gguf}: size mismatch"):
        load_causal_lm(str(smollm2_gguf), adapter=folder, dtype="float32", device="cpu")
    write_json(toy_card(), folder / "card.json")                     # its card names its base: caught before a load
    with pytest.raises(StudyError, match=f"was made for base toy-raw .* not for {smollm2_gguf} "
                                         rf"\(sha256 {file_sha256(smollm2_gguf)[:16]}…\)"):
        config.load_config(write_config(tmp_path, str(folder), model=str(smollm2_gguf)))
