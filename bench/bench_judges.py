"""LLM judge by label log-probabilities vs the reference's 10-token generation; embedding judge throughput."""
import os, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))

from safety_study.generate import _pad_left, chat_prompt_ids, tiny_chat_model
from safety_study.judges import EmbeddingJudge, LLMJudge, embedding_training_set

N = int(os.environ.get("BENCH_ITEMS", "96"))


def load_judge_model():
    "The shipped toy judge checkpoint (its labels are single tokens)."
    from safety_study import toy
    name = toy.judge_checkpoint()
    model, tok = toy.load_checkpoint(name)
    return model, tok, f"toy judge checkpoint {name}"


def reference(judge, prompts, responses, batch_size=8, full=False):
    "The reference judge: generate up to 10 tokens greedily (stopping at EOS), then test `'REFUSAL' in text`; batch 8 as ours, or 1 per item."
    turns, _ = judge.user_turns(prompts, responses)
    ctx = chat_prompt_ids(judge.tokenizer, turns)
    tok, out = judge.tokenizer, []
    for i in range(0, len(ctx), batch_size):
        ids, mask = _pad_left(ctx[i:i + batch_size], tok.pad_token_id)
        with torch.no_grad():
            g = judge.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=10,
                                     min_new_tokens=10 if full else None,
                                     do_sample=False, pad_token_id=tok.pad_token_id)
        out += ["REFUSAL" in t for t in tok.batch_decode(g[:, ids.shape[1]:], skip_special_tokens=True)]
    return out


def main():
    items = embedding_training_set().sample(N, random_state=0)
    prompts, responses = items.prompt.tolist(), items.response.tolist()
    model, tok, what = load_judge_model()
    judge = LLMJudge(model, tok, prompt="short", batch_size=8, min_label_prob=0.0)
    judge.judge(prompts[:8], responses[:8]); reference(judge, prompts[:8], responses[:8])  # warm-up
    t = time.perf_counter(); reference(judge, prompts, responses); t_ref = time.perf_counter() - t
    t = time.perf_counter(); judge.judge(prompts, responses); t_ours = time.perf_counter() - t
    print(f"# {what}; {N} items; batch 8 for both; label token lengths {[len(l) for l in judge.label_ids]}")
    print(f"llm_judge_label_logits: {t_ref / t_ours:.1f}x (ours {t_ours:.2f}s, reference {t_ref:.2f}s)")
    t = time.perf_counter(); reference(judge, prompts, responses, batch_size=1); t_ref1 = time.perf_counter() - t
    print(f"llm_judge_label_logits_vs_per_item_generate: {t_ref1 / t_ours:.1f}x (ours {t_ours:.2f}s, reference {t_ref1:.2f}s)")
    t = time.perf_counter(); reference(judge, prompts, responses, full=True); t_ref10 = time.perf_counter() - t
    print(f"llm_judge_label_logits_vs_full_10_tokens: {t_ref10 / t_ours:.1f}x (ours {t_ours:.2f}s, reference {t_ref10:.2f}s)")
    if os.environ.get("BENCH_MULTI_TOKEN_LABELS", "1") == "1":  # labels split into several tokens: cache-reuse path
        m2, t2 = tiny_chat_model(seed=0, hidden_size=128, n_layers=4)
        j2 = LLMJudge(m2, t2, prompt="short", batch_size=8, min_label_prob=0.0)
        j2.judge(prompts[:8], responses[:8]); reference(j2, prompts[:8], responses[:8])
        t = time.perf_counter(); reference(j2, prompts, responses); r2 = time.perf_counter() - t
        t = time.perf_counter(); j2.judge(prompts, responses); o2 = time.perf_counter() - t
        print(f"# same, labels of {[len(l) for l in j2.label_ids]} tokens")
        print(f"llm_judge_label_logits_multitoken: {r2 / o2:.1f}x (ours {o2:.2f}s, reference {r2:.2f}s)")
    ej = EmbeddingJudge()
    ej.judge(None, responses[:8])  # load the encoder
    t = time.perf_counter(); ej.judge(None, responses); t_e = time.perf_counter() - t
    print(f"embedding_judge: {N / t_e:.1f} items/s ({t_e:.2f}s for {N} responses, {torch.get_num_threads()} thread(s))")


if __name__ == "__main__":
    main()
