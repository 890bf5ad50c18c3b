"""LLM judge by label log-probabilities vs the reference's 10-token generation; default and embedding judge throughput.

python bench/bench_judges.py                      # the shipped toy judge checkpoint
python bench/bench_judges.py --model /path/to/SmolLM2-135M-Instruct   # any local folder, .gguf or toy:NAME

Both LLM judges read the same answers (a seeded sample of the shipped labelled set) with the same
instruction, truncation and batch size; the first line of results, `llm judge: N.Nx`, is the ratio of
the reference's wall time to ours.
"""
import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

import _machine  # noqa: E402

from safety_study.generate import tiny_chat_model  # noqa: E402
from safety_study.judges import DefaultJudge, EmbeddingJudge, LLMJudge, judge_set  # noqa: E402
from safety_study.models import chat_token_rows, load_causal_lm, pad_id_of, pad_left  # noqa: E402


def load_judge_model(spec):
    "The shipped toy judge checkpoint by default (its labels are single tokens), else any model name."
    if spec is None:
        from safety_study import toy
        spec = f"toy:{toy.judge_checkpoint()}"
    model, tok = load_causal_lm(spec, dtype="float32", device="cpu")
    return model, tok, spec


def reference(judge, prompts, responses, batch_size=8, full=False):
    """The reference judge: generate up to 10 tokens greedily (stopping at EOS), then test `'REFUSAL' in text`;
    batches of `batch_size` in input order, as the reference ran them."""
    turns, _ = judge.user_turns(prompts, responses)
    ctx = chat_token_rows(judge.tokenizer, turns, template_kwargs=judge.chat_template_kwargs)
    tok, out, pad = judge.tokenizer, [], pad_id_of(judge.tokenizer)
    for i in range(0, len(ctx), batch_size):
        b = pad_left(ctx[i:i + batch_size], pad)
        with torch.no_grad():
            g = judge.model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=10,
                                     min_new_tokens=10 if full else None, do_sample=False, pad_token_id=pad)
        out += ["REFUSAL" in t for t in tok.batch_decode(g[:, b["input_ids"].shape[1]:], skip_special_tokens=True)]
    return out


def timed(f, *a, **k):
    t = time.perf_counter(); f(*a, **k); return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description="judge benchmarks")
    ap.add_argument("--model", default=None, help="LLM judge model: local folder, .gguf, toy:NAME (default: the toy judge)")
    ap.add_argument("--items", type=int, default=int(os.environ.get("BENCH_ITEMS", "96")))
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "1")))
    ap.add_argument("--max-response-tokens", type=int, default=256)
    ap.add_argument("--skip-extra", action="store_true", help="only the main LLM ratio and the default judge")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    _machine.print_mm_line()
    items = judge_set().sample(args.items, random_state=0)
    prompts, responses = items.prompt.tolist(), items.response.tolist()
    model, tok, what = load_judge_model(args.model)
    judge = LLMJudge(model, tok, batch_size=8, min_label_prob=0.0, max_response_tokens=args.max_response_tokens)
    judge.judge(prompts[:8], responses[:8]); reference(judge, prompts[:8], responses[:8])  # warm-up
    t_ref = timed(reference, judge, prompts, responses)
    t_ours = timed(judge.judge, prompts, responses)
    print(f"# {what}; {len(items)} answers of the labelled set; batch 8 for both; responses cut to "
          f"{args.max_response_tokens} tokens; label token lengths {[len(l) for l in judge.label_ids]}; "
          f"{torch.get_num_threads()} thread(s)")
    print(f"llm judge: {t_ref / t_ours:.1f}x (ours {t_ours:.2f}s, reference {t_ref:.2f}s)")
    judge.share_prefix = False
    t_np = timed(judge.judge, prompts, responses)
    judge.share_prefix = True
    print(f"llm judge without the shared instruction prefix: {t_ref / t_np:.1f}x (ours {t_np:.2f}s)")
    if not args.skip_extra:
        t_ref1 = timed(reference, judge, prompts, responses, batch_size=1)
        print(f"llm_judge_label_logits_vs_per_item_generate: {t_ref1 / t_ours:.1f}x (reference {t_ref1:.2f}s)")
        t_ref10 = timed(reference, judge, prompts, responses, full=True)
        print(f"llm_judge_label_logits_vs_full_10_tokens: {t_ref10 / t_ours:.1f}x (reference {t_ref10:.2f}s)")
        m2, t2 = tiny_chat_model(seed=0, hidden_size=128, n_layers=4)  # labels split into several tokens
        j2 = LLMJudge(m2, t2, prompt="short", batch_size=8, min_label_prob=0.0)
        j2.judge(prompts[:8], responses[:8]); reference(j2, prompts[:8], responses[:8])
        r2, o2 = timed(reference, j2, prompts, responses), timed(j2.judge, prompts, responses)
        print(f"# tiny random model, labels of {[len(l) for l in j2.label_ids]} tokens")
        print(f"llm_judge_label_logits_multitoken: {r2 / o2:.1f}x (ours {o2:.2f}s, reference {r2:.2f}s)")
    sample = judge_set().sample(100, random_state=1)
    dj = DefaultJudge()
    dj.judge(None, ["warm-up"])  # load the encoder
    t_d = timed(dj.judge, sample.prompt.tolist(), sample.response.tolist())
    print(f"default judge: 100 answers in {t_d:.1f}s ({torch.get_num_threads()} thread(s))")
    ej = EmbeddingJudge()
    t_e = timed(ej.judge, None, responses)
    print(f"embedding_judge: {len(responses) / t_e:.1f} items/s ({t_e:.2f}s for {len(responses)} responses)")


if __name__ == "__main__":
    main()
