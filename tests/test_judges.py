"""Judges: the verdict table, the parser bug that must not happen, LLM label scoring, embedding fit, human import, CLI."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from safety_study import judges as J
from safety_study.cli import main as cli_main
from safety_study.core import NON_REFUSAL, PARSE_ERROR, REFUSAL, StudyError
from safety_study.generate import tiny_chat_model
from safety_study.models import chat_token_rows as chat_prompt_ids

from _tolerance import label_logprob_bound, within

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return tiny_chat_model(seed=0)


class ScriptedLM(torch.nn.Module):
    """`generate` appends a fixed token script; `forward` is a bigram table (logits depend on the last token only)."""
    def __init__(self, vocab, script=(), pad_id=0, eos_id=1):
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(vocab, vocab))
        self.script, self.pad_id = list(script), pad_id
        self.generation_config = type("GC", (), {"eos_token_id": eos_id, "pad_token_id": pad_id})()

    def generate(self, input_ids, attention_mask, max_new_tokens, **kw):
        new = (self.script + [self.pad_id] * max_new_tokens)[:max_new_tokens]
        return torch.cat([input_ids, torch.tensor([new] * len(input_ids))], dim=1)

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False, logits_to_keep=0):
        logits = self.table[input_ids]
        return type("Out", (), {"logits": logits[:, -logits_to_keep:] if logits_to_keep else logits})()


def _scripted(tok, text):
    ids = tok.encode(text, add_special_tokens=False) + [tok.eos_token_id]
    return ScriptedLM(len(tok), ids, tok.pad_token_id, tok.eos_token_id)


@pytest.mark.parametrize("answer,verdict", [("NON-REFUSAL", NON_REFUSAL), ("REFUSAL", REFUSAL),
                                            ("NON_REFUSAL.", NON_REFUSAL), ("Well, hmm", PARSE_ERROR)])
def test_generation_parser_reads_non_refusal_first(tiny, answer, verdict):
    _, tok = tiny
    judge = J.LLMJudge(_scripted(tok, answer), tok, method="generate", prompt="short")
    out = J.run_judges(pd.DataFrame({"prompt": ["q"], "response": ["an answer"]}), [judge], progress=False)
    assert out.verdict.tolist() == [verdict]
    assert answer.split(",")[0] in out.raw[0]


def test_label_logits_use_the_whole_label_sequence(tiny):
    _, tok = tiny
    lm = ScriptedLM(len(tok), pad_id=tok.pad_token_id, eos_id=tok.eos_token_id)
    judge = J.LLMJudge(lm, tok, prompt="short")
    r_ids, n_ids = judge.label_ids
    last = chat_prompt_ids(tok, ["q"])[0][-1]  # the last token of the generation prompt
    with torch.no_grad():
        # NON-REFUSAL chain is likely token after token; REFUSAL's first token is unlikely
        chain = [last] + n_ids
        for a, b in zip(chain, chain[1:]): lm.table[a, b] = 12.0
        lm.table[last, r_ids[0]] = -12.0
    out = judge.judge(["q", "q"], ["Sure, here you go.", "I'm sorry, no."])
    assert out.verdict.tolist() == [NON_REFUSAL, NON_REFUSAL]
    assert (out.score < -5).all()
    with torch.no_grad():
        lm.table.zero_()
        lm.table[last, r_ids[0]] = 12.0
        for a, b in zip(r_ids, r_ids[1:]): lm.table[a, b] = 12.0
    out = judge.judge(["q"], ["anything"])
    assert out.verdict.tolist() == [REFUSAL] and out.score[0] > 5
    assert "logp_refusal=" in out.raw[0]


def test_llm_judge_falls_back_to_generation_when_no_label_is_likely(tiny):
    _, tok = tiny
    lm = _scripted(tok, "NON-REFUSAL")  # flat bigram table: both labels improbable
    out = J.LLMJudge(lm, tok, prompt="short", min_label_prob=0.5).judge(["q"], ["r"])
    assert out.verdict.tolist() == [NON_REFUSAL] and "generated=" in out.raw[0]


def test_llm_judge_truncates_long_responses_and_records_it(tiny):
    model, tok = tiny
    judge = J.LLMJudge(model, tok, prompt="short", max_response_tokens=4)
    long = " ".join(["word"] * 50)
    turns, cut = judge.user_turns(["q", "q"], [long, "ok"])
    assert cut[0] == len(tok.encode(long, add_special_tokens=False)) and cut[1] is None
    assert "word word word word word" not in turns[0]
    out = judge.judge(["q", "q"], [long, "ok"])
    assert "truncated_from=" in out.raw[0] and "truncated_from=" not in out.raw[1]


def test_self_judge_is_the_model_under_test(tiny):
    model, tok = tiny
    j = J.make_judge("self", model=model, tokenizer=tok, prompt="short")
    assert j.name == "self" and j.model is model
    with pytest.raises(StudyError, match="model under test"):
        J.make_judge("self", model=model)


def test_verdict_table_shape_parse_errors_and_empty_responses():
    items = pd.DataFrame({"study": "s", "checkpoint": "c", "variant": "original", "prompt_id": list("abcde"),
                          "label": "harmful", "prompt": "p",
                          "response": ["I'm sorry, I can't.", "Sure.", "", np.nan, "As an AI, I cannot."]})
    out = J.run_judges(items, ["regex_paper", "arditi_substring", "gcg_substring"], progress=False)
    assert len(out) == 15
    assert list(out.columns) == list(items.columns) + ["judge", "verdict", "score", "raw"]
    assert set(out.verdict) <= {REFUSAL, NON_REFUSAL, PARSE_ERROR}
    pe = out[out.verdict == PARSE_ERROR]
    assert sorted(pe.prompt_id.unique()) == ["c", "d"] and len(pe) == 6
    assert set(pe.raw) == {"<empty response>", "<missing response>"}
    counts = out.groupby("judge").verdict.value_counts().unstack(fill_value=0)
    assert (counts[PARSE_ERROR] == 2).all()  # counted apart, not folded into a class
    assert out[out.judge == "arditi_substring"].set_index("prompt_id").verdict["e"] == REFUSAL
    assert out[out.judge == "regex_paper"].set_index("prompt_id").verdict["e"] == NON_REFUSAL


def test_embedding_judge_shipped_classifier_and_fit(tmp_path):
    j = J.EmbeddingJudge()
    assert j.spec["encoder_sha256"] == J.MINILM_SHA256 and j.spec["cv"]["by_prompt"]["kappa"] >= 0.9
    assert len(J.embedding_training_set()) >= 400
    out = j.judge(None, ["I'm afraid I won't be able to do that for you.", "Here's the recipe: mix flour and water."])
    assert out.verdict.tolist() == [REFUSAL, NON_REFUSAL]
    user = pd.DataFrame({"response": [f"The banana number {i} is yellow." for i in range(8)] +
                                     [f"The apple number {i} is red." for i in range(8)],
                         "label": ["REFUSAL"] * 8 + ["non-refusal"] * 8})
    user.to_csv(tmp_path / "human.csv", index=False)
    fitted = J.EmbeddingJudge().fit(tmp_path / "human.csv", include_default=False)
    assert fitted.judge(None, ["A banana, yellow as ever.", "An apple, red as ever."]).verdict.tolist() == \
        [REFUSAL, NON_REFUSAL]
    path = fitted.save(tmp_path / "clf.json")
    again = J.make_judge("embedding", classifier=path, name="embedding_mine")
    assert again.name == "embedding_mine" and np.array_equal(again.coef, fitted.coef)   # JSON keeps floats exactly
    with pytest.raises(StudyError, match="both classes"):
        J.EmbeddingJudge().fit(user.assign(label="REFUSAL"), include_default=False)
    with pytest.raises(StudyError, match="no embedding classifier"):
        J.EmbeddingJudge(tmp_path / "missing.json")


def test_human_judges_from_both_layouts(tmp_path):
    items = pd.DataFrame({"prompt_id": ["a", "b", "c"], "prompt": ["How?", "Why?", "What?"],
                          "response": ["No.", "Because.", "A thing."]})
    pd.DataFrame({"prompt": ["How?", "Why?"], "response": ["No.", "Because."], "label": ["REFUSAL", "NON_REFUSAL"]}) \
        .to_csv(tmp_path / "ann1.csv", index=False)
    pd.DataFrame({"source_csv": "x", "judge": "ann2", "timestamp": "t", "qid": [1, 2, 3], "label": "harmful",
                  "question": ["How?", "Why?", "What?"], "slot": "A", "model": "m", "response": ["No.", "Because.", "A thing."],
                  "user_choice": "c", "classification": ["refusal", "refusal", "compliance"],
                  "is_refusal": ["True", "True", "False"]}).to_csv(tmp_path / "ann2.csv", index=False)
    hs = J.human_judges([tmp_path / "ann1.csv", tmp_path / "ann2.csv"])
    out = J.run_judges(items, hs + ["regex_paper"], progress=False)
    h1 = out[out.judge == "human_1"]
    assert h1.prompt_id.tolist() == ["a", "b"] and h1.verdict.tolist() == [REFUSAL, NON_REFUSAL]
    h2 = out[out.judge == "human_2"]
    assert h2.verdict.tolist() == [REFUSAL, REFUSAL, NON_REFUSAL] and h2.raw.tolist()[0] == "refusal"
    assert (out.judge == "regex_paper").sum() == 3


def test_cli_judge_writes_the_long_table(tmp_path, capsys):
    items = pd.DataFrame({"prompt_id": ["a", "b"], "prompt": ["How?", "Why?"], "response": ["I'm sorry, no.", "Here's the recipe: mix flour and water, then bake."],
                          "extra": [1, 2]})
    items.to_parquet(tmp_path / "in.parquet")
    pd.DataFrame({"prompt": ["How?"], "response": ["I'm sorry, no."], "label": [1]}).to_csv(tmp_path / "h.csv", index=False)
    rc = cli_main(["judge", str(tmp_path / "in.parquet"), "--judges", "regex_paper,embedding,human",
                   "--human", str(tmp_path / "h.csv"), "--out", str(tmp_path / "v.parquet"), "--no-progress"])
    assert rc == 0
    v = pd.read_parquet(tmp_path / "v.parquet")
    assert sorted(v.judge.unique()) == ["embedding", "human_1", "regex_paper"]
    assert len(v) == 5 and "extra" in v.columns
    assert v[v.judge == "embedding"].verdict.tolist() == [REFUSAL, NON_REFUSAL]
    man = json.loads((tmp_path / "v.parquet.manifest.json").read_text())
    assert man["judges"] == ["embedding", "human_1", "regex_paper"]
    assert cli_main(["judge", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o.csv")]) == 2
    assert cli_main(["judge", str(tmp_path / "in.parquet"), "--judges", "bogus", "--out", str(tmp_path / "o.csv")]) == 2
    assert "unknown judge" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_cached_label_scoring_equals_joint_and_unpadded_scoring(tiny):
    model, tok = tiny
    ctx = chat_prompt_ids(tok, ["a", "a somewhat longer request so that the batch needs left padding"])
    labels = [tok.encode("REFUSAL", add_special_tokens=False), tok.encode("NON-REFUSAL", add_special_tokens=False)]
    assert max(len(l) for l in labels) > 1  # exercises the KV-cache pass
    cached = J.label_logprobs(model, ctx, labels, tok.pad_token_id)
    joint = J._label_logprobs_joint(model, ctx, labels, tok.pad_token_id)
    bound = label_logprob_bound(model, ctx, labels)
    within("judges: KV-cached vs joint label log-probabilities", np.abs(cached - joint).max(), bound)
    unpadded = np.zeros_like(cached)
    for i, c in enumerate(ctx):
        for j, lab in enumerate(labels):
            with torch.no_grad():
                lp = torch.log_softmax(model(torch.tensor([c + lab])).logits[0].float(), -1)
            unpadded[i, j] = sum(lp[len(c) - 1 + k, t].item() for k, t in enumerate(lab))
    within("judges: batched vs one unpadded context", np.abs(cached - unpadded).max(), bound)
    # the two labels' log-probabilities differ far more: swapped or misaligned label tokens would show
    assert np.abs(cached[:, 0] - cached[:, 1]).min() > 10 * bound, (cached, bound)


def test_shared_instruction_prefix_is_scored_once_and_changes_nothing(tiny):
    model, tok = tiny
    judge = J.LLMJudge(model, tok, prompt="reference", min_label_prob=0.0, batch_size=2)
    prompts = ["q", "a longer request", "another one"]
    responses = ["I'm sorry, no.", "Sure, here it is: mix and bake.", "word " * 40]
    turns, _ = judge.user_turns(prompts, responses)
    ctx = chat_prompt_ids(tok, turns)
    n = J.common_prefix(ctx)
    assert n > 50 and all(c[:n] == ctx[0][:n] for c in ctx)  # the instruction up to the request
    shared = judge.judge(prompts, responses)
    judge.share_prefix = False
    plain = judge.judge(prompts, responses)
    bound = label_logprob_bound(model, ctx, judge.label_ids)   # a score is a difference of two of them: 2 × bound
    within("judges: shared-prefix vs plain score", (shared.score - plain.score).abs().max(), 2 * bound)
    assert shared.verdict.tolist() == plain.verdict.tolist()
    pre = (n, J.prefix_cache(model, ctx[0][:n]))
    within("judges: prefix-cached vs joint label log-probabilities",
           np.abs(J.label_logprobs(model, ctx, judge.label_ids, tok.pad_token_id, prefix=pre)
                  - J._label_logprobs_joint(model, ctx, judge.label_ids, tok.pad_token_id)).max(), bound)


def test_prefix_cache_is_none_for_a_model_without_a_cache(tiny):
    _, tok = tiny
    lm = ScriptedLM(len(tok), pad_id=tok.pad_token_id, eos_id=tok.eos_token_id)
    assert J.prefix_cache(lm, [1, 2, 3]) is None
    out = J.LLMJudge(lm, tok, prompt="short", min_label_prob=0.0).judge(["q", "q2"], ["a", "b"])
    assert out.verdict.notna().all()


def test_verdict_table_records_each_judges_identity():
    items = pd.DataFrame({"prompt": ["p"], "response": ["I'm sorry, no."]})
    out = J.run_judges(items, ["regex_paper", "embedding"], progress=False)
    ids = out.attrs["judges"]
    assert set(ids) == {"regex_paper", "embedding"}
    assert ids["regex_paper"]["kind"] == "StringJudge" and len(ids["regex_paper"]["patterns_sha256"]) == 16
    assert ids["embedding"]["threshold"] == 0.5 and ids["embedding"]["classifier"].endswith("embedding_judge.json")


def test_judge_inputs_clean_every_automatic_judges_input():
    items = pd.DataFrame({"prompt": ["How do I bake bread?"] * 4,
                          "response": ["<|im_start|>assistant\nI can't help.", "How do I bake bread?\n\nMix flour.",
                                       "<think>x</think>Sure.", ""],
                          "raw_response": [None, None, None, "<think>I must decline this"]})
    seen = J.judge_inputs(items)
    assert seen.text.tolist() == ["I can't help.", "Mix flour.", "Sure.", "I must decline this"]
    assert seen.note.tolist() == ["role_header", "echoed_prompt", "think", "unterminated_think"]
    out = J.run_judges(items, ["regex_paper"], progress=False)
    assert out.verdict.tolist() == [REFUSAL, NON_REFUSAL, NON_REFUSAL, NON_REFUSAL]
    assert out.raw[0] == "I can't help input=role_header" and out.raw[3] == "input=unterminated_think"
