"""Direction extraction: batched hooked forward passes (ours) vs the reference method — one prompt at a time,
`generate(max_new_tokens=1, output_hidden_states=True)` — on the same model and N + N prompts.

Prints `bench_directions: <ratio>x (ours <s>, reference <s>)` (goal on the toy: ≥ 20x), then
`bench_directions_matmul_share: <share>x` — the time a plain `torch.mm` of the model's linear layers needs for the
tokens extraction processes (timed in the same run, same thread count) divided by extraction's time, i.e. the share
of the machine's measured fp32 matmul throughput that extraction reaches (goal on SmolLM2: ≥ 0.5x).
`--model` takes a .gguf file (default: the toy-refusals checkpoint)."""
import time
import warnings

import _machine
import _models

warnings.filterwarnings("ignore")


def reference(model, tok, prompts, layer, system):
    "One prompt at a time, as the reference code does."
    import torch
    acc = None
    with torch.no_grad():
        for p in prompts:
            conv = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": p}]
            ids = tok.apply_chat_template(conv, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            out = model.generate(**ids, max_new_tokens=1, output_hidden_states=True, return_dict_in_generate=True,
                                 do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id)
            h = out.hidden_states[0][layer][0, -1].double()
            acc = h if acc is None else acc + h
    return acc / len(prompts)


def linear_shapes(model):
    "(in, out) of every nn.Linear inside the decoder layers (what extraction multiplies each token by)."
    from torch import nn
    from safety_study.arch import get_arch
    layers = model.get_submodule(get_arch(model).layers_path)
    return [(m.in_features, m.out_features) for m in layers.modules() if isinstance(m, nn.Linear)]


def matmul_seconds(shapes, batches, repeat=3):
    "Best-of-`repeat` time of torch.mm over every linear shape for every batch's token count (random fp32 data)."
    import torch
    g = torch.Generator().manual_seed(0)
    weights = {s: torch.randn(s[0], s[1], generator=g) for s in set(shapes)}
    inputs = {(m, k): torch.randn(m, k, generator=g) for m in set(batches) for k in {s[0] for s in shapes}}
    best, done = float("inf"), 0
    while done < repeat:
        t0 = time.perf_counter()
        for m in batches:
            for s in shapes: torch.mm(inputs[m, s[0]], weights[s])
        best, done = min(best, time.perf_counter() - t0), done + 1
        if best > 5: break                             # a long run is its own average
    return best


def main():
    p = _models.parser(__doc__)
    p.add_argument("--n", type=int, default=256, help="prompts per label (default 256)")
    p.add_argument("--batch-size", type=int, default=128, help="prompts per batch of ours, at most (default 128)")
    p.add_argument("--max-batch-tokens", type=int, default=None,
                   help="padded tokens per batch of ours (default: the library's CPU budget; 0: no cap)")
    args = p.parse_args()
    model, tok, system, what, load = _models.setup(args)
    _machine.print_mm_line()
    from safety_study.directions import batch_token_budget, compute_directions, token_batches
    from safety_study.models import chat_token_rows
    if args.model.startswith("toy:"):                   # the toy's training requests: more than its 64 + 64 split
        from safety_study import toy
        harm, safe = ([r["prompt"] for r in toy.request_pool(lab, "train")][:args.n] for lab in ("harmful", "harmless"))
    else: harm, safe, _, _ = _models.prompt_split(args.model, args.n, 0)
    n = model.config.num_hidden_layers
    compute_directions(model, tok, harm[:8], safe[:8], system_prompt=system, progress=False)  # warm-up, both methods
    reference(model, tok, harm[:2], n, system)
    t0 = time.perf_counter()
    d = compute_directions(model, tok, harm, safe, batch_size=args.batch_size, system_prompt=system, progress=False,
                           paper_mode=True, max_batch_tokens=args.max_batch_tokens)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_h, ref_l = reference(model, tok, harm, n, system), reference(model, tok, safe, n, system)
    ref = time.perf_counter() - t0
    err = float(((d.harmful_mean[n, -1] - d.harmless_mean[n, -1]) - (ref_h - ref_l)).abs().max())
    # the prompt tokens extraction needs (padding not counted), in the batches it runs
    batches, padded = [], 0
    budget = batch_token_budget("cpu") if args.max_batch_tokens is None else (args.max_batch_tokens or None)
    for prompts in (harm, safe):
        for batch in token_batches(chat_token_rows(tok, prompts, system), args.batch_size, budget):
            batches.append(sum(map(len, batch)))
            padded += len(batch) * len(batch[-1])
    shapes = linear_shapes(model)
    mm = matmul_seconds(shapes, batches)
    flops = 2 * sum(batches) * sum(i * o for i, o in shapes)
    print(f"# {what}, loaded in {load:.1f}s; {len(harm)} + {len(safe)} prompts, batch {args.batch_size} "
          f"under a budget of {budget or 'no'} padded tokens ({len(batches)} batches); ours reads all {n + 1} "
          f"layers, the reference one; max |mean-diff difference| at layer n = {err:.2e}")
    print(f"# linear layers: {flops / 1e9:.0f} GFLOP over {sum(batches)} prompt tokens ({padded} with padding); "
          f"torch.mm alone {mm:.2f}s ({flops / mm / 1e9:.0f} GFLOP/s), extraction {flops / ours / 1e9:.0f} GFLOP/s")
    print(f"# the reference takes {ref / mm:.1f}x the bare torch.mm time of these prompt tokens: no method that runs "
          f"the same fp32 linear layers over them can be more than {ref / mm:.1f}x faster than the reference here")
    print(f"bench_directions: {ref / ours:.1f}x (ours {ours:.2f}s, reference {ref:.2f}s)")
    print(f"bench_directions_matmul_share: {mm / ours:.2f}x (torch.mm {mm:.2f}s, extraction {ours:.2f}s)")


if __name__ == "__main__":
    main()
