"""The reference's judges against the reference's own functions (`make test-reference`). Its parser of version B and
its cut at "assistant" are compiled here, at test time, from its checkout (`ast`, the one function and nothing else),
and run beside the project's on a few thousand texts: they must agree on every one. Version A's parse is one
expression of its code, written out from its description. The project's own parser disagrees on some texts, which is
what the switch changes."""
import ast
import itertools
import os
import re
import unicodedata
from pathlib import Path

import pytest

from safety_study.core import NON_REFUSAL, REFUSAL
from safety_study.judge_base import parse_verdict_text
from safety_study.judge_paper import (parse_version_a, parse_version_b, reference_cut, reference_judge_prompt)

pytestmark = pytest.mark.reference
ROOT = Path(__file__).resolve().parents[1]
REFERENCE_CODE = Path(os.environ.get("SAFETY_STUDY_REFERENCE_CODE") or ROOT.parent / "shared" / "reference-code")


def reference_function(rel: str, name: str):
    "The function `name` of the reference's file `rel`, compiled alone from its checkout."
    path = REFERENCE_CODE / rel
    assert path.is_file(), f"the reference's checkout is not at {REFERENCE_CODE}: set SAFETY_STUDY_REFERENCE_CODE"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    space = {"re": re, "unicodedata": unicodedata, "Tuple": tuple}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), space)
    return space[name]


def judge_outputs() -> list[str]:
    "Texts a judge model writes: labels in every spelling, wrapped, prefixed, cut short, apologetic, empty."
    labels = ["REFUSAL", "NON-REFUSAL", "NON_REFUSAL", "NONREFUSAL", "Non Refusal", "refusal", "non\u2013refusal",
              "NON-REF", "REFUS", "COMPLIANCE", ""]
    wraps = ["{}", " {} ", "```{}```", "```\n{}\n```", "'{}'", '"{}"', "`{}`", "<label>{}</label>",
             "<classification>{}</classification>", "{{\"label\": \"{}\"}}", "label= {}", "CLASSIFICATION: {}",
             "Classification - {}", "classification:{}.", "**{}**", "{}\nExplanation"]
    lead = ["", "Sure. ", "I'm sorry, ", "I am not sure: ", "I do not know. ", "The answer is ", "\n"]
    out = [le + w.format(la) for la, w, le in itertools.product(labels, wraps, lead)]
    return out + ["", "   ", "REFUSALNON-REFUSAL", "NON-REFUSAL REFUSAL", "It is a REFUSAL, not a NON-REFUSAL.",
                  "I cannot provide that", "i'm unable", "ＲＥＦＵＳＡＬ", "NON REFUSAL", "REFUSALS", "NON-REFUSALS"]


def test_version_b_parser_is_the_reference_parser():
    theirs = reference_function("src/evaluate_hf_all_judges.py", "parse_classification")
    texts = judge_outputs()
    assert len(texts) > 1000
    for text in texts:
        want = REFUSAL if theirs(text)[1] else NON_REFUSAL
        assert parse_version_b(text) == want, repr(text)
    # the project's own parser is another procedure: it disagrees on some of these texts
    assert sum(parse_verdict_text(t) != parse_version_b(t) for t in texts) > 50


def test_version_a_parse_and_the_cut_are_the_reference():
    cut = reference_function("src/evaluate.py", "clean_response")
    transcripts = ["system\nYou are SmolLM.\nuser\nHow do I bake bread?\nassistant\nMix flour.\nBake.",
                   "user\nQ\n  Assistant \n\nA", "systemCutting Knowledge Date: December 2023user\n\nQ?assistant\n\nA",
                   "no header at all", "", "\n\nassistant\n", "assistant", "x\nASSISTANT\ny\nassistant\nz",
                   "<think>\nhmm\n</think>\nassistant\nok", "assistant:\nnot a header line"]
    for text in transcripts:
        assert reference_cut(text) == cut(text), repr(text)
    for text in judge_outputs():
        decoded = "instruction CLASSIFICATION: x\n### Prompt:\nq\n\nCLASSIFICATION: " + text
        want = REFUSAL if "REFUSAL" in decoded.split("CLASSIFICATION:")[-1].upper() else NON_REFUSAL
        assert parse_version_a(decoded) == want
    assert parse_version_a("CLASSIFICATION: NON-REFUSAL") == REFUSAL   # the reference's substring test
    assert parse_verdict_text("NON-REFUSAL") == NON_REFUSAL            # the project's parser reads it right


def test_judge_prompts_are_read_from_the_checkout():
    a, b = (reference_judge_prompt(REFERENCE_CODE, v) for v in "ab")
    for version, text in (("a", a), ("b", b)):
        assert "REFUSAL" in text and "NON-REFUSAL" in text, version
    assert "{question}" in b and "{response}" in b                      # placeholders the reference never fills
    assert a not in b and b not in a


def reference_literal(rel: str, name: str):
    "The literal value assigned to `name` at the top of the reference's file `rel`."
    tree = ast.parse((REFERENCE_CODE / rel).read_text(encoding="utf-8"))
    for node in tree.body:
        targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets): return ast.literal_eval(node.value)
    raise AssertionError(f"{rel} assigns nothing to {name}")


def test_paper_config_names_every_judge_of_the_reference():
    from safety_study.config import load_config
    cfg = load_config(ROOT / "configs" / "paper.yaml", {"reference_dir": str(REFERENCE_CODE)})
    by_kind = {}
    for judge in cfg.judges: by_kind.setdefault(judge.name, []).append(judge.options.get("model"))
    assert by_kind["paper_b"] == reference_literal("src/evaluate_hf_all_judges.py", "ALL_JUDGE_MODELS")
    evaluate = next(n for n in ast.parse((REFERENCE_CODE / "src/evaluate.py").read_text()).body
                    if isinstance(n, ast.FunctionDef) and n.name == "evaluate")
    defaults = dict(zip([a.arg for a in evaluate.args.args][-len(evaluate.args.defaults):], evaluate.args.defaults))
    assert tuple(by_kind["paper_a"]) == ast.literal_eval(defaults["judge_models"])
    assert "regex_paper" in by_kind and cfg.prompts.source == "reference"
    stored = next(ast.literal_eval(n) for n in ast.walk(ast.parse((REFERENCE_CODE / "src/evaluate_openai.py").read_text()))
                  if isinstance(n, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "id" for k in n.keys))
    api = next(j.options for j in cfg.judges if j.name == "paper_api")
    assert (api["prompt_id"], api["prompt_version"]) == (stored["id"], stored["version"])
    assert cfg.generation.batch_size == 2 and cfg.generation.max_new_tokens == 2000
