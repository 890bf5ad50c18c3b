"""The study runner end to end: papermill per checkpoint, resumability after a kill, failures
reported with their notebook, the submitit code path, and pre-flight config errors."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from safety_study import runner
from safety_study.config import load_config
from safety_study.generate import tiny_chat_model

CLI = [sys.executable, "-m", "safety_study.cli"]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    "Three tiny-random chat models saved as local checkpoints."
    root = tmp_path_factory.mktemp("models")
    paths = []
    for seed in range(3):
        model, tok = tiny_chat_model(seed=seed)
        p = root / f"tiny-{seed}"
        model.save_pretrained(p)
        tok.save_pretrained(p)
        paths.append(p)
    return paths


def write_config(path: Path, models, names=None, judges=("regex_paper", "arditi_substring", "self"), **extra):
    names = names or [f"m{i}" for i in range(len(models))]
    cfg = {"name": "t", "output_dir": extra.pop("output_dir", str(path.parent / "runs")), "seed": 0,
           "checkpoints": [{"name": n, "model": str(m)} for n, m in zip(names, models)],
           "prompts": {"source": "default", "n_direction": 8, "n_eval": 3},
           "abliteration": {"select": True, "n_validation": 3, "selection": {"batch_size": 8}},
           "generation": {"max_new_tokens": 6, "batch_size": 8},
           "judges": list(judges), "headline_judge": judges[0], **extra}
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_checkpoint_notebook_runs_and_writes_tables(tmp_path, tiny_models, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative output_dir, as in the shipped configs
    cfg = load_config(write_config(tmp_path / "s.yaml", tiny_models[:1], output_dir="runs"))
    table = runner.run_study(cfg, aggregate=False, progress=False)
    assert table.status.tolist() == ["done"], table.error.tolist()
    out = Path(table.path[0])
    assert out == tmp_path / "runs" / "t" / "m0"
    for f in ("checkpoint.ipynb", "checkpoint.html", "responses.parquet", "judgements.parquet",
              "selection.parquet", "directions.safetensors", "result.json", "manifest.json"):
        assert (out / f).exists(), f
    resp = pd.read_parquet(out / "responses.parquet")
    assert sorted(resp.variant.unique()) == ["abliterated", "original"]
    assert len(resp) == 2 * 6 and set(resp.split) == {"eval"}
    assert not resp.response.str.contains("<|im_start|>", regex=False).any()
    j = pd.read_parquet(out / "judgements.parquet")
    assert set(j.judge) == {"regex_paper", "arditi_substring", "self"}
    assert len(j) == 3 * len(resp)
    assert set(j.verdict) <= {"REFUSAL", "NON_REFUSAL", "PARSE_ERROR"}
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] and man["config_hash"]
    # a second run skips the finished checkpoint; a changed setting reruns it
    assert runner.run_study(cfg, aggregate=False, progress=False).status.tolist() == ["skipped"]
    cfg.generation.max_new_tokens = 5
    assert runner.run_study(cfg, aggregate=False, progress=False).status.tolist() == ["done"]


def test_failing_checkpoint_is_reported_and_others_finish(tmp_path, tiny_models):
    broken = tmp_path / "not-a-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    cfg_path = write_config(tmp_path / "s.yaml", [tiny_models[0], broken], names=["good", "broken"],
                            judges=("regex_paper",))
    proc = subprocess.run(CLI + ["run", str(cfg_path), "--no-aggregate"], capture_output=True, text=True,
                          env={**os.environ, "TQDM_DISABLE": "1"}, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "failed" in proc.stdout and "done" in proc.stdout
    failed_nb = tmp_path / "runs" / "t" / "failed" / "broken" / "checkpoint.ipynb"
    assert str(failed_nb) in proc.stdout
    assert "cannot load model" in failed_nb.read_text()
    status = runner.study_status(tmp_path / "runs" / "t")
    assert dict(zip(status.name, status.status)) == {"good": "done", "broken": "failed"}


def test_killed_run_resumes_without_redoing_finished_work(tmp_path, tiny_models):
    cfg_path = write_config(tmp_path / "s.yaml", tiny_models, judges=("regex_paper",))
    rdir = tmp_path / "runs" / "t"
    proc = subprocess.Popen(CLI + ["run", str(cfg_path), "--no-aggregate"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (rdir / "m0" / "manifest.json").exists():
        assert time.time() < deadline and proc.poll() is None, "the first checkpoint never finished"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its kernel, mid-batch
    proc.wait()
    assert not runner.is_complete(rdir / "m2")
    first = (rdir / "m0" / "manifest.json").stat().st_mtime_ns
    table = runner.run_study(load_config(cfg_path), aggregate=False, progress=False)
    status = dict(zip(table.name, table.status))
    assert status["m0"] == "skipped" and status["m2"] == "done"
    assert (rdir / "m0" / "manifest.json").stat().st_mtime_ns == first
    assert all(runner.is_complete(rdir / n) for n in ("m0", "m1", "m2"))
    assert not list(rdir.glob(".tmp-*"))


def test_submitit_local_executor_runs_a_two_checkpoint_study(tmp_path, tiny_models):
    cfg = load_config(write_config(tmp_path / "s.yaml", tiny_models[:2], judges=("regex_paper",)))
    table = runner.run_study(cfg, executor="submitit-local", aggregate=False, progress=False)
    assert table.status.tolist() == ["done", "done"]
    jobs = json.loads((tmp_path / "runs" / "t" / "jobs.json").read_text())
    assert set(jobs["jobs"]) == {"m0", "m1"}


def test_unknown_model_path_fails_before_any_work(tmp_path, tiny_models):
    cfg_path = write_config(tmp_path / "s.yaml", [tiny_models[0], tmp_path / "missing"], names=["ok", "lost"])
    proc = subprocess.run(CLI + ["run", str(cfg_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "'lost'" in proc.stderr and "does not exist" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_self_judges_and_the_cross_judge_panel(tmp_path, tiny_models):
    "`self` is the original model on both variants, `self_abliterated` the edited one; the panel adds llm:<name>."
    from safety_study import judges as J
    from safety_study.aggregate import load_run
    cfg = load_config(write_config(tmp_path / "s.yaml", tiny_models[:2], judges=("regex_paper", "self", "self_abliterated"),
                                   judge_panel=True))
    table = runner.run_study(cfg, aggregate=False, progress=False)
    assert table.status.tolist() == ["done", "done"], table.error.tolist()
    rdir = Path(table.attrs["run_dir"])
    resp = pd.read_parquet(rdir / "m0" / "responses.parquet")
    j = pd.read_parquet(rdir / "m0" / "judgements.parquet")
    assert set(j[j.judge == "self"].variant) == {"original", "abliterated"}
    assert set(j[j.judge == "self_abliterated"].variant) == {"abliterated"}
    # `self` on the abliterated answers is exactly the original model judging them
    from safety_study.models import load_causal_lm
    lm, tok = load_causal_lm(str(tiny_models[0]))
    abl = resp[resp.variant == "abliterated"].reset_index(drop=True)
    again = J.run_judges(abl, [J.make_judge("self", model=lm, tokenizer=tok)], progress=False)
    ours = j[(j.judge == "self") & (j.variant == "abliterated")].sort_values("prompt_id").reset_index(drop=True)
    assert ours.score.round(5).tolist() == again.sort_values("prompt_id").score.round(5).tolist()
    panel = sorted(p.name for p in (rdir / "panel").glob("*.parquet"))
    assert panel == ["m0.parquet", "m1.parquet"]
    p1 = pd.read_parquet(rdir / "panel" / "m1.parquet")
    assert set(p1.judge) == {"llm:m1"} and set(p1.checkpoint) == {"m0", "m1"} and len(p1) == 2 * len(resp)
    data = load_run(rdir)
    assert {"llm:m0", "llm:m1", "self", "self_abliterated"} <= set(data["judges"])
    mtime = (rdir / "panel" / "m0.parquet").stat().st_mtime
    runner.run_panel(cfg, rdir, progress=False)                  # done judges are not run again
    assert (rdir / "panel" / "m0.parquet").stat().st_mtime == mtime


def test_paper_mode_checkpoint_follows_the_reference(tmp_path, tiny_models):
    "Paper mode: direction on all prompts (evaluation ones included), normalised in bf16, edits rounded to bf16."
    import torch
    from safety_study.directions import Directions
    cfg = load_config(write_config(tmp_path / "s.yaml", tiny_models[:1], judges=("regex_paper",),
                                   abliteration={"paper_mode": True, "select": False, "layer_fraction": 1.0,
                                                 "n_validation": 0}))
    table = runner.run_study(cfg, aggregate=False, progress=False)
    assert table.status.tolist() == ["done"], table.error.tolist()
    out = Path(table.path[0])
    res = json.loads((out / "result.json").read_text())
    assert res["direction_on_eval"] and res["direction_bf16"] and res["edit"]["round_to"] == "bfloat16"
    d = Directions.load(out / "directions.safetensors")
    assert d.n_harmful == 8 + 3 and d.meta["state_n"] == "post-final-norm"
    r = d.direction(d.n_layers, -1, bf16=True)
    ref = (d.harmful_mean[-1, -1] - d.harmless_mean[-1, -1]).bfloat16()
    assert torch.equal(r, (ref / ref.norm()).float())
    times = runner.stage_times(out.parent, ["m0"])
    assert {"directions", "selection", "generate_original", "judges", "total"} <= set(times.columns) and len(times) == 1
