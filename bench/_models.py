"""What the benchmarks share: `--model` (a toy checkpoint, a folder, a Hub id in the cache or a .gguf file),
its chat system prompt, and seeded harmful/harmless prompt splits as the `abliterate` command draws them."""
import argparse, os, time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_MODEL = "toy:toy-refusals"


def parser(doc: str, model: str = DEFAULT_MODEL) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--model", default=model, help=f"toy:NAME, a folder, a Hub id in the local cache or a .gguf file "
                                                   f"(default {model})")
    p.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "1")),
                   help="torch threads (default $BENCH_THREADS or 1)")
    return p


def setup(args):
    "Threads, then (model, tokenizer, system prompt, description, load seconds) of `args.model` in fp32."
    import torch
    torch.set_num_threads(args.threads)
    from safety_study.models import load_causal_lm
    t0 = time.perf_counter()
    model, tok = load_causal_lm(args.model, dtype="float32", device="cpu")
    load = time.perf_counter() - t0
    system = None
    if args.model.startswith("toy:"):
        from safety_study import toy
        system = toy.system_prompt(args.model[4:])
    cfg = model.config
    what = (f"{args.model} ({cfg.model_type}, {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, fp32, {args.threads} thread(s))")
    return model, tok, system, what, load


def prompt_split(model_spec: str, n_direction: int, n_val: int, seed: int = 0):
    "(harmful, harmless, harmful_val, harmless_val): the toy's direction prompts for a toy, else the default set."
    from safety_study import prompts as P
    if model_spec.startswith("toy:"):
        from safety_study import toy
        df = toy.toy_prompts()
        df = df[df["split"] == "direction"].drop(columns="split")
    else: df = P.default_prompts()
    sp = P.split_prompts(df, n_direction, n_val, seed=seed)
    get = lambda split, lab: sp[(sp.split == split) & (sp.label == lab)]["prompt"].tolist()  # noqa: E731
    return get("direction", "harmful"), get("direction", "harmless"), get("eval", "harmful"), get("eval", "harmless")
