"""Direction extraction: batched hooked forward passes (ours) vs the reference method — one prompt at a time,
`generate(max_new_tokens=1, output_hidden_states=True)` — on the same model and 256 + 256 prompts.

Prints `bench_directions: <ratio>x (ours <s>, reference <s>)`. Uses the toy-refusals checkpoint when it is built,
else a tiny random Llama with a word-level chat tokenizer."""
import itertools, os, time, warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
from transformers import AutoModelForCausalLM, AutoTokenizer

from safety_study.directions import compute_directions


def load():
    try:
        from safety_study import toy
        path = toy.checkpoint_path("toy-refusals")
        h = [r["prompt"] for r in toy.request_pool("harmful", "train")][:256]
        l = [r["prompt"] for r in toy.request_pool("harmless", "train")][:256]
        return "toy-refusals", AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path), h, l
    except Exception:
        from safety_study.arch import tiny_model, tiny_tokenizer, TINY_WORDS
        words = TINY_WORDS
        prompts = [" ".join(c) for c in itertools.permutations(words[:12], 4)]
        return ("tiny-llama (hidden 128, 4 layers)", tiny_model("llama", hidden=128, layers=4),
                tiny_tokenizer(), prompts[:256], prompts[256:512])


@torch.no_grad()
def reference(model, tok, prompts, layer):
    "One prompt at a time, as the reference code does."
    acc = None
    for p in prompts:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        out = model.generate(**ids, max_new_tokens=1, output_hidden_states=True, return_dict_in_generate=True,
                             do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id)
        h = out.hidden_states[0][layer][0, -1].double()
        acc = h if acc is None else acc + h
    return acc / len(prompts)


def main():
    name, model, tok, harm, safe = load()
    n = model.config.num_hidden_layers
    compute_directions(model, tok, harm[:8], safe[:8], progress=False)  # warm-up, both methods
    reference(model, tok, harm[:2], n)
    t0 = time.perf_counter()
    d = compute_directions(model, tok, harm, safe, batch_size=128, progress=False, paper_mode=True)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_h, ref_l = reference(model, tok, harm, n), reference(model, tok, safe, n)
    ref = time.perf_counter() - t0
    err = float(((d.harmful_mean[n, -1] - d.harmless_mean[n, -1]) - (ref_h - ref_l)).abs().max())
    print(f"# model {name}, {len(harm)} + {len(safe)} prompts; ours reads all {n + 1} layers, "
          f"the reference one; max |mean-diff difference| at layer n = {err:.2e}")
    print(f"bench_directions: {ref / ours:.1f}x (ours {ours:.2f}s, reference {ref:.2f}s)")


if __name__ == "__main__":
    main()
