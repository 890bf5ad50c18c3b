"""The real study's generation settings: batch size and token budget on the study's 100 evaluation prompts.

Generates the 50 + 50 evaluation answers of `configs/smollm2-135m.yaml` with `generate_responses` at each batch size of
$BENCH_BATCHES (default 25,50,100: 25 is the config's, 100 one batch per variant) and $BENCH_MAX_NEW_TOKENS (128),
and prints, per setting, the seconds, the ratio against batch 25, the share of answers cut at the budget and whether
the answers are the same as batch 25's. `--model` takes a .gguf file or folder, `--adapter` a LoRA rung."""
import os
import time
import warnings

import _machine
import _models

warnings.filterwarnings("ignore")
MAX_NEW = int(os.environ.get("BENCH_MAX_NEW_TOKENS", "128"))
BATCHES = [int(b) for b in os.environ.get("BENCH_BATCHES", "25,50,100").split(",")]


def main():
    p = _models.parser(__doc__, model="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--adapter", default=None, help="a shipped rung name or an adapter folder")
    args = p.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    from safety_study import ladder
    from safety_study.generate import generate_responses
    from safety_study.models import load_causal_lm
    model, tok = load_causal_lm(args.model, adapter=args.adapter, dtype="float32", device="cpu")
    system = ladder.system_prompt(args.adapter) if args.adapter in ladder.RUNGS else None
    prompts = ladder.eval_prompts()
    _machine.print_mm_line()
    generate_responses(model, tok, prompts.head(4), max_new_tokens=8, progress=False)   # warm-up
    base = None
    print(f"# {args.model} + {args.adapter or 'no adapter'}; {len(prompts)} prompts; max_new_tokens={MAX_NEW}; "
          f"{args.threads} thread(s)")
    for batch in BATCHES:
        t = time.perf_counter()
        out = generate_responses(model, tok, prompts, max_new_tokens=MAX_NEW, batch_size=batch, system_prompt=system,
                                 progress=False)
        seconds = time.perf_counter() - t
        if base is None: base = (seconds, out)
        same = int((out.response == base[1].response).sum())
        print(f"generate_batch_{batch}: {base[0] / seconds:.2f}x against batch {BATCHES[0]} ({seconds:.1f}s); "
              f"cut at the budget {(out.finish == 'length').mean():.2f}; mean new tokens {out.n_new_tokens.mean():.0f}; "
              f"same answers as batch {BATCHES[0]} {same}/{len(out)}")


if __name__ == "__main__":
    main()
