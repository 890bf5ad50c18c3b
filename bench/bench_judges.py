"""LLM judge by label log-probabilities vs the reference's 10-token generation; embedding judge throughput."""
import os, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))

from safety_study.core import StudyError
from safety_study.generate import _pad_left, chat_prompt_ids, tiny_chat_model
from safety_study.judges import EmbeddingJudge, LLMJudge, embedding_training_set

N = int(os.environ.get("BENCH_ITEMS", "96"))


def load_judge_model():
    try:
        from safety_study import toy
        name = toy.judge_checkpoint()
        model, tok = toy.load_checkpoint(name)
        return model, tok, f"toy judge checkpoint {name}"
    except (StudyError, ImportError, AttributeError):
        model, tok = tiny_chat_model(seed=0, hidden_size=128, n_layers=4)
        return model, tok, "untrained toy-shaped Llama (toy checkpoints not built)"


def reference(judge, prompts, responses, batch_size=8):
    "The reference judge: generate 10 tokens greedily, then test `'REFUSAL' in text`."
    turns, _ = judge.user_turns(prompts, responses)
    ctx = chat_prompt_ids(judge.tokenizer, turns)
    tok, out = judge.tokenizer, []
    for i in range(0, len(ctx), batch_size):
        ids, mask = _pad_left(ctx[i:i + batch_size], tok.pad_token_id)
        with torch.no_grad():
            g = judge.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=10, min_new_tokens=10,
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
    print(f"# {what}; {N} items; batch 8 for both")
    print(f"llm_judge_label_logits: {t_ref / t_ours:.1f}x (ours {t_ours:.2f}s, reference {t_ref:.2f}s)")
    ej = EmbeddingJudge()
    ej.judge(None, responses[:8])  # load the encoder
    t = time.perf_counter(); ej.judge(None, responses); t_e = time.perf_counter() - t
    print(f"embedding_judge: {N / t_e:.1f} items/s ({t_e:.2f}s for {N} responses, {torch.get_num_threads()} thread(s))")


if __name__ == "__main__":
    main()
