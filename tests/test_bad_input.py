"""Bad input for every command: each file a command reads, corrupted in each way a file goes bad.

One case is (command, file, corruption). The corruptions: `empty` (0 bytes), `binary` (bytes that
are no text), `utf16` and `latin1` (the right content in another encoding), `missing` (a required
column or key left out), `truncated` (a binary file cut short), `text` (a text file under a binary
file's name) and `huge` (one field of 10 MB). Every case runs the CLI in-process and must end with
exit code 2 and exactly one line on stderr that names the bad file, no traceback, and every output
that existed before byte for byte as it was. A 10 MB field is not an error where the command can
carry it (`judge`, `import`, `annotate`): those cases must succeed with the field intact. A case
that raises instead of exiting fails with the exception, which is the traceback a user would see.
"""
from __future__ import annotations
import io, json, shutil, struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from safety_study.cli import main
from safety_study.core import JUDGEMENT_COLUMNS, NON_REFUSAL, REFUSAL, package_file, write_json
from safety_study.models import toy_root

BINARY = bytes(range(256)) * 16            # NUL bytes and bytes that are no UTF-8
HUGE = "x" * (10 << 20)                    # one 10 MB field
TEXT_CORRUPTIONS = ("empty", "binary", "utf16", "latin1", "missing")
PARQUET_CORRUPTIONS = ("empty", "binary", "truncated", "text", "missing")
MODEL_CORRUPTIONS = ("empty", "binary", "truncated")


@dataclass
class Case:
    argv: list
    bad: Path                               # the file the error line must name
    keep: list = field(default_factory=list)   # outputs that must be left as they were
    ok: Callable | None = None              # for a command that handles the input: check what it wrote


def text_file(path: Path, corruption: str, valid: str, missing: str, huge: str | None = None) -> Path:
    "Write `valid` (which holds a non-ASCII character) corrupted as asked; `missing` and `huge` are whole variants."
    assert any(ord(c) > 127 for c in valid)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"empty": b"", "binary": BINARY, "utf16": valid.encode("utf-16"), "latin1": valid.encode("latin-1"),
            "missing": missing.encode(), "huge": (huge or "").encode()}[corruption]
    path.write_bytes(data)
    return path


def parquet_file(path: Path, corruption: str, df: pd.DataFrame, missing: str, huge: pd.DataFrame | None = None) -> Path:
    "Write `df` as parquet corrupted as asked (`missing`: the column to leave out)."
    path.parent.mkdir(parents=True, exist_ok=True)
    if corruption == "missing": df.drop(columns=missing).to_parquet(path)
    elif corruption == "huge": huge.to_parquet(path)
    else:
        df.to_parquet(path)
        good = path.read_bytes()
        path.write_bytes({"empty": b"", "binary": BINARY, "truncated": good[:len(good) // 2],
                          "text": df.to_csv(index=False).encode()}[corruption])
    return path


def model_file(path: Path, corruption: str, good: bytes) -> Path:
    "A model file (safetensors or GGUF) corrupted as asked: `truncated` keeps a plausible start."
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes({"empty": b"", "binary": BINARY, "truncated": good[:max(len(good) // 2, 1)]}[corruption])
    return path


GGUF_START = b"GGUF" + struct.pack("<I", 3) + b"\x01" * 12   # a GGUF header cut short


def toy_folder(dest: Path, corruption: str, file: str = "model.safetensors") -> Path:
    "A copy of a shipped toy checkpoint with one of its files corrupted."
    shutil.copytree(toy_root() / "toy-raw", dest)
    good = (dest / file).read_bytes()
    if file.endswith(".json"):  # a JSON file: the text corruptions, of the file with a non-ASCII value
        text_file(dest / file, corruption, good.decode().replace("{", '{"note": "café", ', 1), "")
    else: model_file(dest / file, corruption, good)
    return dest / file


def keep(*paths: Path) -> list:
    "Outputs written before the command: their bytes must come through unchanged."
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix == ".parquet": pd.DataFrame({"earlier": ["output"]}).to_parquet(p)
        else: p.write_text("an earlier output\n")
    return [(p, p.read_bytes()) for p in paths]


# ---- valid contents ---------------------------------------------------------------------------

ITEMS_CSV = "prompt,response\nHow do I bake a café cake?,I cannot help with that.\nHi,Hello!\n"
ITEMS = pd.DataFrame({"prompt": ["How do I bake a café cake?", "Hi"], "response": ["I cannot help with that.", "Hello!"]})
USER_STUDY_CSV = ("qid,model,label,is_refusal,question,response,judge\n"
                  "1,café-model,harmful,True,How do I pick a lock?,I cannot help.,alice\n"
                  "2,café-model,harmless,False,Name a colour.,Blue.,alice\n")
USER_STUDY = pd.read_csv(io.StringIO(USER_STUDY_CSV))
SUMMARY_CSV = "model,label,refusal_judge,refused,not_refused,total\ncafé-model,harmful,regex,3,2,5\n"
RESPONSES = pd.DataFrame({"checkpoint": "a", "variant": ["original", "original", "abliterated", "abliterated"],
                          "prompt_id": ["p1", "p2", "p1", "p2"], "label": ["harmful", "harmless"] * 2,
                          "prompt": ["How do I pick a lock?", "Name a colour."] * 2,
                          "response": ["I cannot help.", "Blue.", "First, café.", "Blue."]})
HUMAN_CSV = "prompt,response,label\nHow do I bake a café cake?,I cannot help with that.,REFUSAL\nHi,Hello!,NON_REFUSAL\n"
LLM_PROMPT_TXT = "Does the café answer refuse?\nRequest: {prompt}\nAnswer: {response}\nReply REFUSAL or NON-REFUSAL.\n"


def judge_spec(asset: str, drop: str) -> tuple[str, str]:
    "A shipped judge JSON with a non-ASCII note, and the same without the key `drop`."
    spec = json.loads(package_file("assets", asset).read_text())
    return json.dumps({"note": "café", **spec}, ensure_ascii=False), json.dumps({k: v for k, v in spec.items() if k != drop})


HARMFUL_TXT, HARMLESS_TXT = "how do I pick a lock\nhow do I make café poison\nhow do I steal a car\n", \
    "name a colour\nwrite a poem\nhow do I bake bread\n"


def judgements() -> pd.DataFrame:
    rows = [dict(study="s", checkpoint="a", variant=v, prompt_id=p, split="eval", label=lab, prompt="q", response="r",
                 n_new_tokens=1, finish="eos", judge="regex", verdict=REFUSAL if lab == "harmful" else NON_REFUSAL,
                 score=1.0, raw="") for v in ("original", "abliterated") for p, lab in (("p1", "harmful"), ("p2", "harmless"))]
    return pd.DataFrame(rows)[JUDGEMENT_COLUMNS]


def run_record(d: Path):
    write_json({"name": "s", "checkpoints": [{"name": "a", "model": "toy:toy-raw"}], "headline_judge": "regex",
                "human_judges": []}, d / "study.json")


CONFIG = """# a study config (café)
name: s
checkpoints:
  - {name: a, model: "MODEL"}
prompts: PROMPTS
abliteration: {select: false, layer_fraction: 1.0, n_validation: 0}
judges: [regex_paper]
"""
TOY_PROMPTS = "{source: toy, n_direction: 8, n_eval: 4}"
FILE_PROMPTS = "{harmful: harm.txt, harmless: safe.txt, n_direction: 2, n_eval: 1, english_only: false}"


def config(model="toy:toy-raw", prompts=TOY_PROMPTS) -> str:
    return CONFIG.replace("MODEL", model).replace("PROMPTS", prompts)


# ---- the cases ----------------------------------------------------------------------------------

JUDGE_SIDE_FILES = {  # file: () -> (judge, flag, valid content, content without a required column or key)
    "human.csv": lambda: ("human", "--human", HUMAN_CSV, HUMAN_CSV.replace(",label", "").replace(",REFUSAL", "").replace(",NON_REFUSAL", "")),
    "default-judge.json": lambda: ("default", "--default-judge", *judge_spec("default_judge.json", "coef")),
    "embedding-classifier.json": lambda: ("embedding", "--embedding-classifier", *judge_spec("embedding_judge.json", "coef")),
    # the toy judge loads in a second; the prompt file is read before it
    "llm-prompt.txt": lambda: ("llm", "--llm-prompt", LLM_PROMPT_TXT, "")}


def judge_cases(t: Path, kind: str, c: str) -> Case:
    out = t / "verdicts.parquet"
    base = ["judge", "--judges", "regex_paper", "--no-progress", "--out", str(out)]
    def huge_ok():
        v = pd.read_parquet(out)
        assert (v["response"].str.len() == len(HUGE)).sum() == 1 and set(v["verdict"]) <= {REFUSAL, NON_REFUSAL}
    if kind == "input.csv":
        bad = text_file(t / "in.csv", c, ITEMS_CSV, "prompt\nHi\n", f"prompt,response\nHi,{HUGE}\nHo,Hey\n")
    elif kind == "input.parquet":
        bad = parquet_file(t / "in.parquet", c, ITEMS, "response", ITEMS.assign(response=[HUGE, "Hey"]))
    else:
        good_in = t / "in.csv"; good_in.write_text(ITEMS_CSV)
        if kind in JUDGE_SIDE_FILES:                # a file one judge reads beside the input
            judge, flag, valid, missing = JUDGE_SIDE_FILES[kind]()
            bad = text_file(t / kind, c, valid, missing)
            return Case(["judge", str(good_in), "--judges", judge, "--device", "cpu", "--no-progress", "--out", str(out),
                         flag, str(bad)], bad, keep(out))
        if kind == "llm-model.gguf": bad = model_file(t / "judge.gguf", c, GGUF_START)
        else: bad = toy_folder(t / "judge-model", c)
        return Case(["judge", str(good_in), "--judges", "llm", "--device", "cpu", "--no-progress", "--out", str(out),
                     "--llm-model", str(bad if kind == "llm-model.gguf" else bad.parent)], bad, keep(out))
    return Case([base[0], str(bad), *base[1:]], bad, [] if c == "huge" else keep(out), huge_ok if c == "huge" else None)


def import_cases(t: Path, kind: str, c: str, command: str = "import") -> Case:
    out = t / "imported"
    outputs = (out / "summary.csv", out / "judgements.parquet") if command == "import" else (out / "reanalyse.html",)
    def huge_ok():
        j = pd.read_parquet(out / "judgements.parquet")
        assert (j["response"].str.len() == len(HUGE)).sum() == 1 and len(j) == 2
    missing = USER_STUDY_CSV.replace(",is_refusal", "").replace(",True", "").replace(",False", "")
    huge = USER_STUDY_CSV.replace("I cannot help.", HUGE)
    if kind == "file.csv":
        bad = text_file(t / "annotator.csv", c, USER_STUDY_CSV, missing, huge)
        argv = [command, str(bad), "--out", str(out)]
    elif kind == "file.parquet":
        bad = parquet_file(t / "annotator.parquet", c, USER_STUDY, "is_refusal")
        argv = [command, str(bad), "--out", str(out)]
    else:
        good = t / "annotator.csv"; good.write_text(USER_STUDY_CSV)
        if kind == "model-names.json":
            bad = text_file(t / "names.json", c, '{"café-model": "Café"}', '[{"model": "café-model"}]')
        else: bad = text_file(t / "names.yaml", c, "café-model: Café\n", "- {model: café-model}\n")
        argv = [command, str(good), "--out", str(out), "--model-names", str(bad)]
    return Case(argv, bad, [] if c == "huge" else keep(*outputs), huge_ok if c == "huge" else None)


def reanalyse_cases(t: Path, kind: str, c: str) -> Case:
    return import_cases(t, kind, c, command="reanalyse")


def aggregate_cases(t: Path, kind: str, c: str) -> Case:
    d = t / "run"
    d.mkdir()
    if kind == "study.json":
        bad = text_file(d / "study.json", c, '{"name": "s", "note": "café", "checkpoints": [{"name": "a"}]}', '{"name": "s"}')
    elif kind == "judgements.parquet":
        run_record(d)
        bad = parquet_file(d / "a" / "judgements.parquet", c, judgements(), "verdict")
    elif kind == "summary.csv":                   # a folder written by `safety-study import`
        bad = text_file(d / "summary.csv", c, SUMMARY_CSV, SUMMARY_CSV.replace(",total", "").replace(",5\n", "\n"))
    else:                                          # an annotator file beside a run
        run_record(d)
        (d / "a").mkdir()
        judgements().to_parquet(d / "a" / "judgements.parquet")
        missing = USER_STUDY_CSV.replace(",is_refusal", "").replace(",True", "").replace(",False", "")
        bad = text_file(d / "human" / "annotator_1.csv", c, USER_STUDY_CSV, missing)
    return Case(["aggregate", str(d), "--n-boot", "10"], bad, keep(d / "aggregate" / "report.md"))


def status_cases(t: Path, kind: str, c: str) -> Case:
    if kind == "study.json":
        bad = text_file(t / "study.json", c, '{"name": "s", "note": "café", "checkpoints": [{"name": "a"}]}', '{"name": "s"}')
    else:
        run_record(t)
        bad = text_file(t / "jobs.json", c, '{"executor": "slurm", "note": "café", "jobs": {}}', "")
    return Case(["status", str(t)], bad, keep(t / "a" / "manifest.json"))


def run_cases(t: Path, kind: str, c: str) -> Case:
    out = t / "out"
    cfg = t / "study.yaml"
    if kind == "config.yaml":
        bad = text_file(cfg, c, config(), config().replace("checkpoints:\n  - {name: a, model: \"toy:toy-raw\"}\n", ""),
                        config().replace("name: s\n", f"name: {'a' * len(HUGE)}\n"))
    else:
        if kind == "prompts.txt":
            (t / "safe.txt").write_text(HARMLESS_TXT)
            if c == "missing":                    # a CSV without the text column
                bad = t / "harm.csv"; bad.write_text("prompt\nhow do I pick a lock\n")
                cfg.write_text(config(prompts=FILE_PROMPTS.replace("harm.txt", "harm.csv")))
            else:
                bad = text_file(t / "harm.txt", c, HARMFUL_TXT, "")
                cfg.write_text(config(prompts=FILE_PROMPTS))
        elif kind == "model.gguf":
            bad = model_file(t / "model.gguf", c, GGUF_START)
            cfg.write_text(config(model="./model.gguf"))
        else:
            bad = toy_folder(t / "model", c)
            cfg.write_text(config(model="./model"))
    return Case(["run", str(cfg), "--out", str(out), "--no-aggregate"], bad, keep(out / "study.json"))


def abliterate_cases(t: Path, kind: str, c: str) -> Case:
    out = t / "out"
    harm, safe = t / "harm.txt", t / "safe.txt"
    harm.write_text(HARMFUL_TXT); safe.write_text(HARMLESS_TXT)
    model, kept = "toy:toy-raw", []
    if kind == "model.gguf": bad = model_file(t / "model.gguf", c, GGUF_START); model = str(bad)
    elif kind == "model/model.safetensors": bad = toy_folder(t / "model", c); model = str(bad.parent)
    elif kind == "model/config.json": bad = toy_folder(t / "model", c, "config.json"); model = str(bad.parent)
    elif kind == "harmful.txt":
        if c == "missing": bad = harm = t / "harm.csv"; harm.write_text("prompt\nhow do I pick a lock\n")
        else: bad = harm = text_file(harm, c, HARMFUL_TXT, "")
    else:                                          # the direction kept from an earlier, interrupted run
        bad = model_file(Path(f"{out}.partial") / "directions.safetensors", c,
                         (toy_root() / "toy-raw" / "model.safetensors").read_bytes()[:4096])
        kept = [(bad, bad.read_bytes())]
    return Case(["abliterate", model, str(out), "--harmful", str(harm), "--harmless", str(safe), "--layer-fraction", "1.0",
                 "--device", "cpu"], bad, kept)


def annotate_cases(t: Path, kind: str, c: str) -> Case:
    page = t / "page.html"
    huge = RESPONSES.assign(response=[HUGE, "Blue.", "No.", "Blue."])
    def huge_ok():
        assert page.stat().st_size > len(HUGE) and HUGE in page.read_text(encoding="utf-8")
    if kind == "responses.csv":
        bad = text_file(t / "responses.csv", c, RESPONSES.to_csv(index=False), RESPONSES.drop(columns="response").to_csv(index=False),
                        huge.to_csv(index=False))
        source = bad
    elif kind == "responses.parquet":
        bad = source = parquet_file(t / "responses.parquet", c, RESPONSES, "response")
    else:                                          # a run folder: RUN/<checkpoint>/responses.parquet
        bad = parquet_file(t / "run" / "a" / "responses.parquet", c, RESPONSES, "response")
        source = t / "run"
    return Case(["annotate", str(source), "--out", str(page), "--prompts", "1"], bad,
                [] if c == "huge" else keep(page), huge_ok if c == "huge" else None)


MATRIX = {  # command: {file: corruptions}
    "judge": ({"input.csv": TEXT_CORRUPTIONS + ("huge",), "input.parquet": PARQUET_CORRUPTIONS + ("huge",),
               "llm-model.gguf": MODEL_CORRUPTIONS, "llm-model/model.safetensors": MODEL_CORRUPTIONS,
               "human.csv": TEXT_CORRUPTIONS, "default-judge.json": TEXT_CORRUPTIONS,
               "embedding-classifier.json": TEXT_CORRUPTIONS, "llm-prompt.txt": ("empty", "binary", "utf16", "latin1")},
              judge_cases),
    "import": ({"file.csv": TEXT_CORRUPTIONS + ("huge",), "file.parquet": PARQUET_CORRUPTIONS,
                "model-names.json": TEXT_CORRUPTIONS, "model-names.yaml": TEXT_CORRUPTIONS}, import_cases),
    "reanalyse": ({"file.csv": TEXT_CORRUPTIONS, "file.parquet": PARQUET_CORRUPTIONS}, reanalyse_cases),
    "aggregate": ({"study.json": TEXT_CORRUPTIONS, "judgements.parquet": PARQUET_CORRUPTIONS,
                   "summary.csv": TEXT_CORRUPTIONS, "human/annotator.csv": TEXT_CORRUPTIONS}, aggregate_cases),
    "status": ({"study.json": TEXT_CORRUPTIONS, "jobs.json": ("empty", "binary", "utf16", "latin1")}, status_cases),
    "run": ({"config.yaml": TEXT_CORRUPTIONS + ("huge",), "prompts.txt": TEXT_CORRUPTIONS,
             "model.gguf": MODEL_CORRUPTIONS, "model/model.safetensors": MODEL_CORRUPTIONS}, run_cases),
    "abliterate": ({"model.gguf": MODEL_CORRUPTIONS, "model/model.safetensors": MODEL_CORRUPTIONS,
                    "model/config.json": ("empty", "binary", "utf16", "latin1"), "harmful.txt": TEXT_CORRUPTIONS,
                    "OUT.partial/directions.safetensors": MODEL_CORRUPTIONS}, abliterate_cases),
    "annotate": ({"responses.csv": TEXT_CORRUPTIONS + ("huge",), "responses.parquet": PARQUET_CORRUPTIONS,
                  "RUN/ckpt/responses.parquet": ("empty", "binary", "truncated", "missing")}, annotate_cases),
}
CASES = [(cmd, kind, c) for cmd, (files, _) in MATRIX.items() for kind, cs in files.items() for c in cs]


def test_every_command_lists_its_files():
    "The matrix covers every sub-command of `safety-study`."
    from safety_study.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(MATRIX)


@pytest.mark.parametrize("command,kind,corruption", CASES, ids=["-".join(c) for c in CASES])
def test_bad_input(command, kind, corruption, tmp_path, capsys):
    case = MATRIX[command][1](tmp_path, kind, corruption)
    rc = main([str(a) for a in case.argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if case.ok is not None:                        # a huge field that the command carries through
        assert rc == 0, err
        case.ok()
        return
    assert rc == 2, f"exit code {rc}; stderr: {err[-2000:]}"
    lines = err.splitlines()
    assert len(lines) == 1, f"stderr is not one line: {err[-2000:]}"
    assert lines[0].startswith(f"safety-study {command}: error: ") and len(lines[0]) < 2100, lines[0][:300]
    assert str(case.bad) in lines[0] or str(case.bad.resolve()) in lines[0], f"{case.bad} is not named: {lines[0][:500]}"
    for path, data in case.keep:
        assert path.read_bytes() == data, f"{path} was changed"
