"""One settings schema: every bad value fails when the config is read, with one line that names the key, the
value and what is allowed; the `abliterate` flags, the YAML keys and the README's settings table all come from it;
`relax` and `positions` mean one thing in the config, the specs and the command line."""
from __future__ import annotations
import argparse, dataclasses, re
from pathlib import Path

import pytest

from safety_study import abliterate, config
from safety_study.config import (AbliterationSettings, StudyConfig, build_settings, checkpoint_abliteration,
                                 config_from_dict, load_config, settings_leaves, settings_table)
from safety_study.core import StudyError
from safety_study.edits import EditSpec
from safety_study.selection import SelectionSpec

ROOT = Path(__file__).resolve().parents[1]
MINI = {"name": "s", "checkpoints": [{"name": "a", "model": "toy:toy-raw"}],
        "prompts": {"source": "toy", "n_direction": 64, "n_eval": 50}}


def write_config(tmp_path, **parts) -> Path:
    import yaml
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**MINI, **parts}))
    return path


BAD = [  # (config parts, the key the error names, what it must say is allowed)
    ({"abliteration": {"edit": {"targets": 5}}}, "abliteration.edit.targets", ["'attn'", "'mlp'"]),
    ({"abliteration": {"edit": {"targets": ["attn", "mlpp"]}}}, "abliteration.edit.targets[1]", ["'attn'", "'mlp'"]),
    ({"abliteration": {"selection": {"scan": "everything"}}}, "abliteration.selection.scan", ["'pruned'", "'full'"]),
    ({"abliteration": {"selection": {"kl_threshold": -1}}}, "abliteration.selection.kl_threshold", [">= 0"]),
    ({"judges": [{"name": "embedding", "treshold": 0.3}]}, "judges[0].treshold", ["threshold", "batch_size"]),
]


@pytest.mark.parametrize("parts,key,allowed", BAD, ids=[b[1] for b in BAD])
def test_bad_value_fails_at_load(tmp_path, parts, key, allowed):
    path = write_config(tmp_path, **parts)
    with pytest.raises(StudyError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"study config {path}: ")
    assert key in message
    value = re.search(r"(got [^;]*)", message)
    assert value and ("5" in value.group(1) or "mlpp" in value.group(1) or "everything" in value.group(1)
                      or "-1" in value.group(1) or "0.3" in value.group(1)), message
    for word in allowed: assert word in message, (word, message)


@pytest.mark.parametrize("old,new", [("scale", "edit.scale"), ("relax", "selection.relax"),
                                     ("positions", "selection.positions"), ("selection", "selection.method")])
def test_old_flat_key_says_where_it_moved(tmp_path, old, new):
    value = "arditi" if old == "selection" else 1
    with pytest.raises(StudyError, match=re.escape(f"abliteration.{old} (") + ".*" + re.escape(f"abliteration.{new}")):
        load_config(write_config(tmp_path, abliteration={old: value}))
    parts = {"checkpoints": [{"name": "a", "model": "toy:toy-raw", "abliteration": {old: value}}]}
    with pytest.raises(StudyError, match=re.escape(f"checkpoints['a'].abliteration.{new}")):
        load_config(write_config(tmp_path, **parts))


def test_nested_override_merges_key_by_key(tmp_path):
    parts = {"abliteration": {"edit": {"scale": 0.5, "skip_begin": 0}},
             "checkpoints": [{"name": "a", "model": "toy:toy-raw", "abliteration": {"edit": {"scale": 2.0}}}]}
    cfg = load_config(write_config(tmp_path, **parts))
    edit = checkpoint_abliteration(cfg, "a").edit
    assert (edit.scale, edit.skip_begin, cfg.abliteration.edit.scale) == (2.0, 0, 0.5)


def stand_in_reference(root):
    "A folder with the reference checkout's file names, for configs that need one: the files are not read here."
    for rel in ("data/harmful.parquet", "data/harmless.parquet", "src/evaluate.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    return root


def test_every_config_loads(tmp_path):
    """Every shipped config is valid under the schema; one that needs the reference's checkout says so without it. A local GGUF file that a fresh clone has not fetched yet
    (`make fetch-smollm2`) is stood in for by a shipped toy checkpoint, without the adapter made for that file (the
    real config's adapters are checked against the GGUF in tests/test_real_ladder.py): the model file is not what
    is checked here."""
    import yaml
    paths = sorted((ROOT / "configs").glob("*.yaml"))
    assert len(paths) >= 3
    for path in paths:
        data = yaml.safe_load(path.read_text())
        for ckpt in data["checkpoints"]:
            if ckpt["model"].endswith(".gguf") and not (path.parent / ckpt["model"]).exists():
                ckpt["model"] = "toy:toy-raw"
                ckpt.pop("adapter", None)
        if "reference_dir" in data and data["reference_dir"] is None:   # paper mode: a stand-in checkout
            with pytest.raises(StudyError, match="reference_dir must name a checkout"):
                config.config_from_dict(data, base=path.parent, source=str(path))
            data["reference_dir"] = str(stand_in_reference(tmp_path))
        cfg = config.config_from_dict(data, base=path.parent, source=str(path))
        assert isinstance(cfg.abliteration.edit, EditSpec) and isinstance(cfg.abliteration.selection, SelectionSpec)


def parser():
    top = argparse.ArgumentParser()
    sub = top.add_subparsers()
    return abliterate.add_cli(sub), top


def test_flags_and_yaml_keys_come_from_the_schema():
    command, _ = parser()
    settings_dests = {a.dest for a in command._actions if a.dest.startswith("abliteration.")}
    leaves = {"abliteration." + ".".join(path) for path, _, _ in settings_leaves(AbliterationSettings)}
    assert settings_dests == leaves                                      # every setting has a flag, and no more
    flags = {a.dest: a.option_strings[0] for a in command._actions if a.dest in leaves}
    assert all(flags[d] == "--" + d.split(".")[-1].replace("_", "-") for d in leaves)
    assert "abliteration.edit.targets" in leaves and "abliteration.selection.kl_threshold" in leaves
    others = {a.dest for a in command._actions} - settings_dests - {"help"}
    study = {"seed", "device", "dtype", "prompts.n_direction"}
    assert others == set(abliterate.COMMAND_ARGS) | study
    assert study <= {".".join(p) for p, _, _ in settings_leaves(StudyConfig)}
    # the YAML keys the loader accepts are the schema's: a key of the schema loads, any other is refused
    for path, _, name in settings_leaves(AbliterationSettings):
        default = getattr(build_settings(AbliterationSettings, {}), path[0])
        value = getattr(default, name) if len(path) > 1 else default
        nested = {path[0]: {name: value}} if len(path) > 1 else {name: value}
        if path == ("select",): nested["layer_fraction"] = 0.5
        build_settings(AbliterationSettings, nested, "abliteration")
    with pytest.raises(StudyError, match="unknown key abliteration.edit.scal"):
        build_settings(AbliterationSettings, {"edit": {"scal": 1.0}}, "abliteration")


def test_flag_values_are_checked_like_yaml_values():
    _, top = parser()
    with pytest.raises(StudyError, match=re.escape("abliteration.selection.kl_threshold: got -1.0")):
        abliterate.settings_from_cli(top.parse_args(["abliterate", "m", "o", "--kl-threshold", "-1"]))
    args = top.parse_args(["abliterate", "m", "o", "--targets", "[mlp]", "--kl-threshold", "0.3", "--no-biases"])
    settings = abliterate.settings_from_cli(args)
    assert (settings.edit.targets, settings.edit.biases, settings.selection.kl_threshold) == (("mlp",), False, 0.3)


def test_relax_and_positions_mean_one_thing():
    _, top = parser()
    from_flags = abliterate.settings_from_cli(top.parse_args(["abliterate", "m", "o"]))
    from_yaml = config_from_dict(MINI).abliteration
    assert from_flags == from_yaml == AbliterationSettings()
    for settings in (from_flags, from_yaml):
        assert settings.selection == SelectionSpec()                     # the spec the algorithms take, unchanged
        assert settings.selection.relax is True and SelectionSpec().relax is True
        assert settings.selection.positions == 1 and isinstance(settings.selection.positions, int)
    flagged = abliterate.settings_from_cli(top.parse_args(["abliterate", "m", "o", "--no-relax", "--positions", "3"]))
    yaml_cfg = config_from_dict({**MINI, "abliteration": {"selection": {"relax": False, "positions": 3}}})
    assert flagged.selection == yaml_cfg.abliteration.selection == SelectionSpec(relax=False, positions=3)
    with pytest.raises(StudyError, match="selection.positions: got 0"):
        config_from_dict({**MINI, "abliteration": {"selection": {"positions": 0}}})


def test_positions_is_a_count_in_selection():
    import types
    import torch
    from safety_study.selection import select_direction
    dirs = types.SimpleNamespace(positions=1, n_layers=2)      # directions read at the last token only
    with pytest.raises(StudyError, match="selection.positions is 2 but the directions hold 1"):
        select_direction(torch.nn.Identity(), None, dirs, ["a"], ["b"], spec=SelectionSpec(positions=2),
                         progress=False)


def readme_table() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = config.SETTINGS_TABLE_MARKERS
    assert start in text and end in text, "README.md has no settings table between the markers"
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def test_readme_settings_table_is_the_generated_one():
    assert readme_table() == settings_table().strip()
    assert "`abliteration.edit.targets`" in readme_table() and "`abliteration.selection.relax`" in readme_table()


def test_checkpoint_hash_follows_the_settings():
    base = config_from_dict(MINI)
    same = config_from_dict(dict(MINI))
    other = config_from_dict({**MINI, "abliteration": {"edit": {"scale": 0.5}}})
    assert config.checkpoint_hash(base, "a") == config.checkpoint_hash(same, "a")
    assert config.checkpoint_hash(base, "a") != config.checkpoint_hash(other, "a")
    assert dataclasses.asdict(base.abliteration)["edit"]["scale"] == 1.0
