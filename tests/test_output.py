"""What `safety-study run` prints: a line per finished stage, plain when stdout is not a terminal (no bar, no
carriage returns), one study bar in a terminal, and never the kernel's start-up warning nor papermill's cell bars.
The executed notebooks keep their outputs."""
import fcntl, json, os, pty, re, select, struct, subprocess, sys, termios, time

import nbformat
import pytest
import yaml

from safety_study.generate import tiny_chat_model

CLI = [sys.executable, "-m", "safety_study.cli"]
NOISE = ("IPKernelApp", "without encryption", "Executing")  # the kernel's warning, papermill's per-cell bar


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "COLUMNS", "LINES")}
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    "A one-checkpoint study of a tiny-random chat model, run to the end (aggregate included) with stdout to a pipe."
    root = tmp_path_factory.mktemp("output")
    model, tok = tiny_chat_model(seed=0)
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    cfg = {"name": "t", "output_dir": str(root / "runs"), "seed": 0,
           "checkpoints": [{"name": "m0", "model": str(root / "tiny")}],
           "prompts": {"source": "default", "n_direction": 8, "n_eval": 3},
           "abliteration": {"select": True, "n_validation": 3, "selection": {"batch_size": 8}},
           "generation": {"max_new_tokens": 6, "batch_size": 8},
           "judges": ["regex_paper"], "headline_judge": "regex_paper"}
    (root / "s.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(CLI + ["run", str(root / "s.yaml"), "--out", str(root / "run")], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env=_env(), timeout=600)
    return root, proc.returncode, proc.stdout.decode()


def test_log_output_is_plain_lines_one_per_stage(study):
    root, rc, out = study
    assert rc == 0, out[-3000:]
    assert "\r" not in out and "\x1b" not in out, out[:3000]
    for noise in NOISE: assert noise not in out, out[:3000]
    lines = out.splitlines()
    assert len(lines) <= 25, out
    stages = json.loads((root / "run" / "m0" / "result.json").read_text())["timings_s"]
    assert {"directions", "selection", "generate_original", "abliterate", "generate_abliterated", "judges"} <= set(stages)
    done = [re.fullmatch(r"m0: (\w+) done at (\d+(?:\.\d)?) s", ln) for ln in lines]
    done = [m for m in done if m]
    assert [m[1] for m in done] == list(stages), out   # one line per stage, in the notebook's order
    clock = [float(m[2]) for m in done]
    assert clock == sorted(clock), out                    # the checkpoint's clock, stage after stage
    assert re.search(r"^m0: done in \d+(\.\d)? s \(1/1\)$", out, re.M), out
    assert re.search(r"^aggregate: done in \d+(\.\d)? s$", out, re.M), out
    assert "report:" in out and (root / "run" / "aggregate" / "report.md").exists()
    # the executed notebooks keep what the cells printed and showed
    for nb_path in (root / "run" / "m0" / "checkpoint.ipynb", root / "run" / "aggregate" / "aggregate.ipynb"):
        nb = nbformat.read(nb_path, as_version=4)
        assert sum(len(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code") >= 5, nb_path


def run_in_terminal(cmd, timeout=600, columns=120):
    "Run `cmd` with stdout and stderr on a pseudo-terminal of `columns` columns; return its exit code and output."
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=_env(), close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.time() + timeout
    try:
        while time.time() < deadline:
            if select.select([master], [], [], 1)[0]:
                try: data = os.read(master, 65536)
                except OSError: break  # every writer closed the terminal
                if not data: break
                chunks.append(data)
        else: pytest.fail("the run did not finish in time")
    finally:
        os.close(master)
        if proc.poll() is None: proc.kill()
    return proc.wait(), b"".join(chunks).decode(errors="replace")


def test_terminal_shows_one_study_bar(study):
    "A rerun in a terminal: the finished checkpoint is skipped, the aggregate runs under the study bar, alone."
    root, rc, _ = study
    assert rc == 0
    code, out = run_in_terminal(CLI + ["run", str(root / "s.yaml"), "--out", str(root / "run")])
    assert code == 0, out[-3000:]
    for noise in NOISE: assert noise not in out, out[:3000]
    assert "\x1b[A" not in out, out[:3000]  # tqdm moves the cursor up only for a second, nested bar
    segments = [s.strip() for s in re.split(r"[\r\n]+", out) if s.strip()]
    bars = [s for s in segments if re.search(r"\d+%\|", s)]
    assert bars and all(s.startswith("t: ") for s in bars), bars
    assert re.search(r"100%\|.*\| 1/1 ", bars[-1]), bars[-1]
    assert any(s.startswith("study t: 0 of 1 checkpoint(s) to run") and s.endswith("skipped: m0") for s in segments), out
    assert any(re.fullmatch(r"aggregate: done in \d+(\.\d)? s", s) for s in segments), out
