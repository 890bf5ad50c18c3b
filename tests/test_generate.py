"""Generation: responses are generated tokens only, in input order, stopped and stripped as documented."""
import pandas as pd
import pytest
import torch

from safety_study.core import StudyError
from safety_study.generate import generate_responses, strip_think, tiny_chat_model
from safety_study.models import chat_token_rows

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return tiny_chat_model(seed=1)


class ScriptedLM(torch.nn.Module):
    """A stand-in causal LM whose `generate` appends a fixed token script to every row (then pads)."""
    def __init__(self, script, pad_id, eos_id):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.script, self.pad_id = list(script), pad_id
        self.generation_config = type("GC", (), {"eos_token_id": eos_id, "pad_token_id": pad_id})()
        self.calls = []

    def generate(self, input_ids, attention_mask, max_new_tokens, **kw):
        self.calls.append(dict(input_ids=input_ids.clone(), attention_mask=attention_mask.clone(), **kw))
        new = (self.script + [self.pad_id] * max_new_tokens)[:max_new_tokens]
        return torch.cat([input_ids, torch.tensor([new] * len(input_ids))], dim=1)


PROMPTS = pd.DataFrame({"prompt_id": ["p0", "p1", "p2", "p3", "p4"],
                        "label": ["harmful", "harmless", "harmful", "harmless", "harmful"],
                        "prompt": ["zebra crossing question number one, which is rather long and wordy",
                                   "short", "a medium length zebra prompt", "tiny", "another zebra"]})


def test_echoed_template_never_reaches_the_response(tiny):
    _, tok = tiny
    script = tok.encode("Hello there", add_special_tokens=False) + [tok.eos_token_id]
    lm = ScriptedLM(script, tok.pad_token_id, tok.eos_token_id)
    out = generate_responses(lm, tok, PROMPTS, max_new_tokens=12, batch_size=2, progress=False)
    assert list(out.response) == ["Hello there"] * 5
    assert list(out.n_new_tokens) == [len(script)] * 5
    assert set(out.finish) == {"eos"}
    for r in out.raw_response:
        assert "<|im_start|>" not in r and "assistant" not in r and "zebra" not in r and "user" not in r
    # left padding: every row of a batch ends at the last column, masks mark real tokens
    for call in lm.calls:
        assert bool(call["attention_mask"][:, -1].all())
        assert call["do_sample"] is False


def test_real_model_response_is_exactly_the_new_tokens(tiny):
    model, tok = tiny
    out = generate_responses(model, tok, PROMPTS, max_new_tokens=8, batch_size=3, progress=False)
    for i, p in enumerate(PROMPTS.prompt):
        ids = torch.tensor([chat_token_rows(tok, [p])[0]])
        with torch.no_grad():
            g = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                               pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        new = g[0, ids.shape[1]:].tolist()
        if tok.eos_token_id in new: new = new[:new.index(tok.eos_token_id)]
        assert out.raw_response[i] == tok.decode(new, skip_special_tokens=True)


def test_rows_keep_input_order_and_columns(tiny):
    model, tok = tiny
    shuffled = PROMPTS.sample(frac=1, random_state=3).reset_index(drop=True)
    a = generate_responses(model, tok, shuffled, max_new_tokens=5, batch_size=2, progress=False)
    b = generate_responses(model, tok, shuffled, max_new_tokens=5, batch_size=1, progress=False)
    assert list(a.prompt_id) == list(shuffled.prompt_id)
    assert list(a.columns) == list(shuffled.columns) + ["raw_response", "response", "n_new_tokens", "finish",
                                                           "reference_text"]
    assert list(a.raw_response) == list(b.raw_response)


def test_think_blocks_kept_raw_and_stripped_for_judging(tiny):
    _, tok = tiny
    script = tok.encode("<think>weigh it up</think> Answer", add_special_tokens=False) + [tok.eos_token_id]
    out = generate_responses(ScriptedLM(script, tok.pad_token_id, tok.eos_token_id), tok, PROMPTS.iloc[:2],
                             progress=False)
    assert list(out.response) == ["Answer", "Answer"]
    assert all("<think>weigh it up</think>" in r for r in out.raw_response)


def test_length_finish_and_min_new_tokens(tiny):
    _, tok = tiny
    script = tok.encode("Hi", add_special_tokens=False)  # never stops
    lm = ScriptedLM(script * 10, tok.pad_token_id, tok.eos_token_id)
    out = generate_responses(lm, tok, PROMPTS.iloc[:2], max_new_tokens=4, min_new_tokens=3, progress=False)
    assert list(out.finish) == ["length", "length"] and list(out.n_new_tokens) == [4, 4]
    assert lm.calls[0]["min_new_tokens"] == 3


def test_min_new_tokens_delays_the_stop(tiny):
    model, tok = tiny
    base = generate_responses(model, tok, PROMPTS.iloc[:1], max_new_tokens=10, progress=False)
    ids = tok.encode(base.raw_response[0], add_special_tokens=False)
    stop = model.generate(input_ids=torch.tensor([chat_token_rows(tok, PROMPTS.prompt[:1])[0]]),
                          max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)[0, -2].item()
    early = generate_responses(model, tok, PROMPTS.iloc[:1], max_new_tokens=10, progress=False, stop_token_ids=[stop])
    late = generate_responses(model, tok, PROMPTS.iloc[:1], max_new_tokens=10, min_new_tokens=6, progress=False,
                              stop_token_ids=[stop])
    assert early.finish[0] == "eos" and early.n_new_tokens[0] <= 2
    assert late.n_new_tokens[0] >= 6
    assert ids  # the unconstrained run produced text


def test_bfloat16_runs(tiny):
    model, tok = tiny_chat_model(seed=2)
    out = generate_responses(model.to(torch.bfloat16), tok, PROMPTS.iloc[:3], max_new_tokens=4, progress=False)
    assert len(out) == 3 and set(out.finish) <= {"eos", "length"}


def test_bad_inputs_raise_study_error(tiny):
    model, tok = tiny
    with pytest.raises(StudyError, match="min_new_tokens"):
        generate_responses(model, tok, PROMPTS, max_new_tokens=4, min_new_tokens=9, progress=False)
    with pytest.raises(StudyError, match="batch_size"):
        generate_responses(model, tok, PROMPTS, batch_size=0, progress=False)
    with pytest.raises(StudyError, match="empty or not text"):
        generate_responses(model, tok, PROMPTS.assign(prompt=["a", "  ", "b", "c", "d"]), progress=False)
    _, bare = tiny_chat_model(seed=3)
    bare.chat_template = None
    with pytest.raises(StudyError, match="chat template"):
        generate_responses(model, bare, PROMPTS, progress=False)


def test_strip_think_on_non_text():
    assert strip_think(None) is None
    assert strip_think("<think>\n\n</think>\n\nOK") == "OK"


def reference_generation(model, tok, prompts, max_new_tokens):
    """The reference's generation, written from its description: the saved model loaded again in float16, greedy
    `generate`, one prompt at a time; the new tokens decoded without special tokens."""
    import copy
    half = copy.deepcopy(model).to(torch.float16)
    out = []
    for row in chat_token_rows(tok, prompts):
        ids = torch.tensor([row])
        new = half.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)[0, len(row):]
        out.append(tok.decode([t for t in new.tolist() if t != tok.eos_token_id], skip_special_tokens=True))
    return out


def test_float16_generation_is_the_reference_generation():
    """`dtype='float16'`: the answers are those of the model cast to float16 (the reference's generation), the model
    itself stays in float32; the study's own dtype gives other answers on this model, so the switch is seen."""
    from safety_study.models import load_causal_lm
    model, tok = load_causal_lm("toy:toy-refusals")
    prompts = ["How do I make a birdhouse?", "Explain how to pick a lock.", "Write a poem about rain.",
               "How can I hack my neighbour's wifi?", "Give me a recipe for soup."]
    table = pd.DataFrame({"prompt": prompts})
    want = reference_generation(model, tok, prompts, 24)
    fp16 = generate_responses(model, tok, table, max_new_tokens=24, batch_size=1, progress=False, dtype="float16")
    assert list(fp16.response) == [w.strip() for w in want]
    assert next(model.parameters()).dtype == torch.float32
    seen = []
    hook = model.lm_head.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))  # copied with the model
    generate_responses(model, tok, table.iloc[:1], max_new_tokens=4, progress=False, dtype="float16")
    n = len(seen)
    generate_responses(model, tok, table.iloc[:1], max_new_tokens=4, progress=False)
    hook.remove()
    assert n and set(seen[:n]) == {torch.float16} and set(seen[n:]) == {torch.float32}, seen
