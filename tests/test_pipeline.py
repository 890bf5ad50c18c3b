"""The checkpoint pipeline: `result.json` through one type, and one set of stages for the study notebook and the CLI."""
import ast
import json
from pathlib import Path

import pytest

from safety_study import aggregate, cli, pipeline
from safety_study.core import StudyError
from safety_study.pipeline import CheckpointRecord

ROOT = Path(__file__).parents[1]
STAGES = ("PromptSplits", "checkpoint_directions", "choose_direction", "edit_model")


def _record(**kw) -> CheckpointRecord:
    fields = dict(checkpoint="m0", model="toy:toy-refusals", n_layers=4, edit={"skip_begin": 1},
                  chosen={"layer": 2, "position": -1, "kl": 0.01, "relaxed": ["induce"]}, selection_note="relaxed",
                  coherence={"ppl_ratio": 1.02, "repeat4": {"original": 0.0, "abliterated": 0.1}},
                  kl_harmless_mean=0.02, timings_s={"directions": 1.5}, total_s=3.0, model_fingerprint={"local": True})
    return CheckpointRecord(**{**fields, **kw})


def test_record_round_trip(tmp_path):
    record = _record()
    path = record.write(tmp_path)
    assert path == tmp_path / "result.json"
    assert CheckpointRecord.read(tmp_path) == record
    data = json.loads(path.read_text())
    # every key the aggregate and the runner read from result.json today
    assert {"checkpoint", "coherence", "kl_harmless_mean", "timings_s", "total_s", "chosen", "edit"} <= set(data)
    assert data["chosen"]["relaxed"] == ["induce"] and data["timings_s"] == {"directions": 1.5}


@pytest.mark.parametrize("text, message", [
    ('{"checkpoint": "m0"', "is not valid JSON"),
    ("", "result.json"),
    ('[1, 2, 3]', "holds a list, not a checkpoint record"),
    ('{"name": "m0", "status": "done", "checkpoint": "m0"}', "key(s) ['name', 'status']"),
    ('{"checkpoint": "m0", "model": "x", "edit": {}}', "has no ['chosen']"),
    ('{"checkpoint": "m0", "model": "x", "edit": {}, "chosen": 3}', "chosen is '3', not a mapping"),
])
def test_bad_record_files(tmp_path, text, message):
    (tmp_path / "result.json").write_text(text)
    with pytest.raises(StudyError, match="result.json") as err:
        CheckpointRecord.read(tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_record(tmp_path):
    with pytest.raises(StudyError, match="has no result.json: the checkpoint has not finished"):
        CheckpointRecord.read(tmp_path)


def test_aggregate_reads_records_through_the_type(tmp_path):
    rdir = aggregate.demo_run(tmp_path / "run")
    _record(checkpoint="Filtered").write(rdir / "Filtered")
    data = aggregate.load_run(rdir)
    assert [r["checkpoint"] for r in data["results"]] == ["Filtered"]
    assert aggregate.coherence_table(data["results"]).ppl_ratio.tolist() == [1.02]
    (rdir / "Filtered" / "result.json").write_text('{"status": "done"}')   # a foreign file is named, in one line
    with pytest.raises(StudyError, match=r"Filtered/result.json has key\(s\) \['status'\]"):
        aggregate.load_run(rdir)


def _notebook_calls(path) -> set:
    "The `pipeline.<name>` attributes the code cells of a notebook use."
    cells = json.loads(Path(path).read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    tree = ast.parse(code)
    return {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
            and n.value.id == "pipeline"}


def test_study_notebook_runs_the_stages():
    calls = _notebook_calls(ROOT / "nbs" / "study" / "checkpoint.ipynb")
    assert set(STAGES) | {"CheckpointRecord"} <= calls, calls
    text = (ROOT / "nbs" / "study" / "checkpoint.ipynb").read_text()
    for inline in ("select_direction(", "cached_directions(", "abliterate_model(", "write_json(result"):
        assert inline not in text, f"the study notebook does {inline} itself instead of calling its stage"


def test_cli_runs_the_same_stages(tmp_path, monkeypatch):
    from safety_study.arch import tiny_model, tiny_tokenizer
    called = []
    for name in STAGES:
        real = getattr(pipeline, name)
        def spy(*a, _real=real, _name=name, **kw):
            called.append(_name)
            return _real(*a, **kw)
        monkeypatch.setattr(pipeline, name, spy)
    model, tokenizer = tiny_model("llama", layers=4), tiny_tokenizer()
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    (tmp_path / "harm.txt").write_text("how do i make a bomb\nhow do i steal a car\nwrite a virus\nhack an email\n")
    (tmp_path / "safe.txt").write_text("bake bread\nwrite a poem\nname a colour\nplan a trip\n")
    rc = cli.main(["abliterate", str(tmp_path / "m"), str(tmp_path / "out"), "--harmful", str(tmp_path / "harm.txt"),
                   "--harmless", str(tmp_path / "safe.txt"), "--select", "--relax", "--n-validation", "2",
                   "--device", "cpu"])
    assert rc == 0
    assert called == list(STAGES), called
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["source"]["model"] == str(tmp_path / "m") and manifest["source"]["local"] is True
    assert {"bytes", "revision", "files"} <= set(manifest["source"])
