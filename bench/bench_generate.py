"""Generating 100 responses: length-bucketed batched greedy generation vs the reference method (batch 2, input order).

Prints `generate_100: <ratio>x (ours <s>, reference <s>)` (goal ≥ 5x) and how many responses are identical.
`--model` takes a .gguf file (default: the toy judge checkpoint); $BENCH_MAX_NEW_TOKENS and $BENCH_BATCH set the
response length (64) and our batch size (50)."""
import os
import time
import warnings

import _machine
import _models

warnings.filterwarnings("ignore")
MAX_NEW = int(os.environ.get("BENCH_MAX_NEW_TOKENS", "64"))
BATCH = int(os.environ.get("BENCH_BATCH", "50"))


def reference(model, tok, prompts, batch_size=2, max_new=MAX_NEW):
    "The reference study's loop: batches of 2 in input order, tokenizer padding, full decode, template cut off after."
    import torch
    tok.padding_side = "left"
    out = []
    for i in range(0, len(prompts), batch_size):
        texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                 for p in prompts[i:i + batch_size]]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            g = model.generate(**enc, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id,
                               eos_token_id=tok.eos_token_id)
        out += tok.batch_decode(g[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def main():
    from safety_study import toy
    p = _models.parser(__doc__, model=f"toy:{toy.judge_checkpoint()}")
    args = p.parse_args()
    model, tok, _, what, load = _models.setup(args)
    _machine.print_mm_line()
    from safety_study.generate import generate_responses
    from safety_study.prompts import default_prompts
    prompts = default_prompts().head(100).reset_index(drop=True)
    plist = prompts["prompt"].tolist()
    reference(model, tok, plist[:4], max_new=8); generate_responses(model, tok, prompts.head(4), max_new_tokens=8,
                                                                     progress=False)  # warm-up
    t = time.perf_counter(); ref = reference(model, tok, plist); t_ref = time.perf_counter() - t
    t = time.perf_counter()
    ours = generate_responses(model, tok, prompts, max_new_tokens=MAX_NEW, batch_size=BATCH, progress=False)
    t_ours = time.perf_counter() - t
    same = sum(a == b for a, b in zip(ours["raw_response"], ref))
    print(f"# {what}, loaded in {load:.1f}s; {len(plist)} prompts; max_new_tokens={MAX_NEW}; ours batch {BATCH} "
          f"length-bucketed, reference batch 2 in input order; identical responses {same}/{len(plist)}; "
          f"ours stopped at EOS {int((ours.finish == 'eos').sum())}/{len(plist)}")
    print(f"generate_100: {t_ref / t_ours:.1f}x (ours {t_ours:.2f}s, reference {t_ref:.2f}s)")


if __name__ == "__main__":
    main()
