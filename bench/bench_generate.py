"""Generating 100 responses: length-bucketed batched greedy generation vs the reference method (batch 2, input order)."""
import os, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))

from safety_study.generate import generate_responses
from safety_study.prompts import default_prompts

MAX_NEW = int(os.environ.get("BENCH_MAX_NEW_TOKENS", "64"))
BATCH = int(os.environ.get("BENCH_BATCH", "50"))


def load_model():
    "The shipped toy checkpoint (the same model both methods run)."
    from safety_study import toy
    name = toy.judge_checkpoint()
    model, tok = toy.load_checkpoint(name)
    return model, tok, f"toy checkpoint {name}"


def reference(model, tok, prompts, batch_size=2):
    "The reference study's loop: batches of 2 in input order, tokenizer padding, full decode, template cut off after."
    tok.padding_side = "left"
    out = []
    for i in range(0, len(prompts), batch_size):
        texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                 for p in prompts[i:i + batch_size]]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            g = model.generate(**enc, max_new_tokens=MAX_NEW, do_sample=False, pad_token_id=tok.pad_token_id,
                               eos_token_id=tok.eos_token_id)
        out += tok.batch_decode(g[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def main():
    model, tok, what = load_model()
    prompts = default_prompts().head(100).reset_index(drop=True)
    plist = prompts["prompt"].tolist()
    reference(model, tok, plist[:4]); generate_responses(model, tok, prompts.head(4), progress=False)  # warm-up
    t = time.perf_counter(); ref = reference(model, tok, plist); t_ref = time.perf_counter() - t
    t = time.perf_counter()
    ours = generate_responses(model, tok, prompts, max_new_tokens=MAX_NEW, batch_size=BATCH, progress=False)
    t_ours = time.perf_counter() - t
    same = sum(a == b for a, b in zip(ours["raw_response"], ref))
    print(f"# {what}; {len(plist)} prompts; max_new_tokens={MAX_NEW}; ours batch {BATCH} length-bucketed, "
          f"reference batch 2 in input order; identical responses {same}/{len(plist)}")
    print(f"generate_100: {t_ref / t_ours:.1f}x (ours {t_ours:.2f}s, reference {t_ref:.2f}s)")


if __name__ == "__main__":
    main()
