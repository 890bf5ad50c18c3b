"""The selection of the package before the selection stage was split out (commit adef16b,
`safety_study/directions.py`: `last_logprobs`, `refusal_score`, `refusal_token_ids`, `learn_refusal_tokens`,
`select_direction`), kept as the reference the benchmarks and the real tests compare against.

Only its imports changed: `chat_inputs` now lives in `safety_study.models`, and the hooks take an `EditSpec`
(`ablation_hooks(model, r, EditSpec(skip_begin=..., skip_end=..., embeddings=...))`)."""
import math
from collections import Counter

import pandas as pd
import torch
from tqdm.auto import tqdm

from safety_study.core import StudyError, write_table
from safety_study.edits import EditSpec, ablation_hooks, addition_hooks
from safety_study.models import chat_inputs

REFUSAL_OPENERS = ("I", "Sorry", "As", "Unfortunately", "I'm", "I cannot", "I can't", "My apologies", "Apologies")


def _device(model): return next(model.parameters()).device


def _batches(prompts, batch_size):
    for i in range(0, len(prompts), batch_size): yield prompts[i:i + batch_size]


def refusal_token_ids(tokenizer, openers=REFUSAL_OPENERS) -> list[int]:
    "First token ids of common refusal openers (strings) — or ids passed through unchanged."
    ids = set()
    for o in openers:
        if isinstance(o, int): ids.add(o); continue
        for text in (o, " " + o):
            enc = tokenizer.encode(text, add_special_tokens=False)
            if not enc or enc[0] == tokenizer.unk_token_id: continue
            piece = tokenizer.decode([enc[0]]).strip()
            if piece == o.split()[0] or len(piece) >= min(2, len(o)): ids.add(int(enc[0]))
    if not ids: raise StudyError(f"none of the refusal openers {list(openers)} is a token of this tokenizer; "
                                 "pass refusal_tokens=[ids] or learn them with learn_refusal_tokens")
    return sorted(ids)


@torch.no_grad()
def last_logprobs(model, tokenizer, prompts, *, batch_size=16, system_prompt=None, chat_template=None) -> torch.Tensor:
    "fp64 log-probabilities of the first response token for each prompt, (n, vocab)."
    out, dev = [], _device(model)
    for batch in _batches(list(prompts), batch_size):
        logits = model(**chat_inputs(tokenizer, batch, system_prompt, dev, chat_template), use_cache=False,
                       logits_to_keep=1).logits[:, -1]
        out.append(torch.log_softmax(logits.double(), -1).cpu())
    return torch.cat(out)


def refusal_score(logprobs: torch.Tensor, token_ids) -> torch.Tensor:
    "Per prompt: log-odds of the first-token probability mass on the refusal tokens."
    lp = torch.logsumexp(logprobs[:, list(token_ids)], -1).clamp(max=-1e-12)
    return lp - torch.log(-torch.expm1(lp))


def learn_refusal_tokens(model, tokenizer, harmful, harmless, *, top: int = 3, batch_size=16, system_prompt=None,
                         chat_template=None) -> list[int]:
    "Tokens the model most often starts harmful answers with, and harmless answers less often."
    h = Counter(last_logprobs(model, tokenizer, harmful, batch_size=batch_size, system_prompt=system_prompt,
                              chat_template=chat_template).argmax(-1).tolist())
    l = Counter(last_logprobs(model, tokenizer, harmless, batch_size=batch_size, system_prompt=system_prompt,
                              chat_template=chat_template).argmax(-1).tolist())
    ids = [t for t, c in h.most_common() if c / len(harmful) > l.get(t, 0) / len(harmless)][:top]
    if not ids: raise StudyError("the model starts harmful and harmless answers with the same tokens; pass "
                                 "refusal_tokens explicitly")
    return ids


def select_direction(model, tokenizer, dirs, harmful_val, harmless_val, *, kl_threshold: float = 0.1,
                     max_layer_fraction: float = 0.8, min_layer: int = 0, induce_threshold: float | None = 0.0,
                     refusal_tokens=None, positions=None, batch_size: int = 16, system_prompt: str | None = None,
                     chat_template: str | None = None, progress: bool = True, save_to=None,
                     skip_begin: int = 0, skip_end: int = 0, embeddings: bool = True, relax: bool = False):
    """Score every candidate (layer, position) by bypass, induce and KL; return (chosen, scores)."""
    if isinstance(refusal_tokens, str) and refusal_tokens == "learn":
        tok_ids = learn_refusal_tokens(model, tokenizer, harmful_val, harmless_val, batch_size=batch_size,
                                       system_prompt=system_prompt, chat_template=chat_template)
    else: tok_ids = refusal_token_ids(tokenizer, refusal_tokens or REFUSAL_OPENERS)
    kw = dict(batch_size=batch_size, system_prompt=system_prompt, chat_template=chat_template)
    base_harmless = last_logprobs(model, tokenizer, harmless_val, **kw)
    base = dict(bypass=float(refusal_score(last_logprobs(model, tokenizer, harmful_val, **kw), tok_ids).mean()),
                induce=float(refusal_score(base_harmless, tok_ids).mean()))
    pos_list = list(positions) if positions is not None else list(range(-dirs.positions, 0))
    cands = [(l, p) for l in range(max(0, min_layer), dirs.n_layers + 1) for p in pos_list]
    rows = []
    for layer, pos in tqdm(cands, desc="direction candidates", disable=not progress, leave=False):
        diff = dirs.mean_diff(layer, pos)
        row = dict(layer=layer, position=pos, diff_norm=float(diff.norm()), bypass_score=math.nan,
                   induce_score=math.nan, kl=math.nan)
        if not torch.isfinite(diff.norm()) or diff.norm() == 0:
            rows.append(row); continue
        r = diff / diff.norm()
        with ablation_hooks(model, r, EditSpec(skip_begin=skip_begin, skip_end=skip_end, embeddings=embeddings)):
            row["bypass_score"] = float(refusal_score(last_logprobs(model, tokenizer, harmful_val, **kw), tok_ids).mean())
            abl = last_logprobs(model, tokenizer, harmless_val, **kw)
        row["kl"] = float((base_harmless.exp() * (base_harmless - abl)).sum(-1).mean())
        with addition_hooks(model, diff, layer):
            row["induce_score"] = float(refusal_score(last_logprobs(model, tokenizer, harmless_val, **kw), tok_ids).mean())
        rows.append(row)
    scores = pd.DataFrame(rows)
    ok = scores.bypass_score.notna() & (scores.kl < kl_threshold) & (scores.layer < max_layer_fraction * dirs.n_layers)
    if induce_threshold is not None: ok &= scores.induce_score > induce_threshold
    scores["passes"] = ok
    scores["chosen"] = False
    scores.attrs.update(base_bypass=base["bypass"], base_induce=base["induce"], refusal_tokens=tok_ids)
    relaxed = None
    if not ok.any() and relax:
        finite = scores.bypass_score.notna()
        in_range = finite & (scores.layer < max_layer_fraction * dirs.n_layers)
        for relaxed, cand in (("induce", in_range & (scores.kl < kl_threshold)), ("induce, kl", in_range),  # noqa: B007
                              ("induce, kl, layer", finite)):
            if cand.any(): ok = cand; break
    if ok.any():
        best = scores[ok].bypass_score.idxmin()
        scores.loc[best, "chosen"] = True
    if save_to is not None: write_table(scores, save_to)
    if not ok.any():
        err = StudyError(f"no candidate passes the filters (KL < {kl_threshold}, layer < {max_layer_fraction}·n, "
                         f"induce > {induce_threshold}); relax them or use a fixed layer_fraction. The scored table "
                         f"is on the error's .scores{' and in ' + str(save_to) if save_to else ''}")
        err.scores = scores
        raise err
    c = scores[scores.chosen].iloc[0]
    chosen = dict(layer=int(c.layer), position=int(c.position), diff_norm=float(c.diff_norm),
                  bypass_score=float(c.bypass_score), induce_score=float(c.induce_score), kl=float(c.kl),
                  base_bypass=base["bypass"], base_induce=base["induce"], refusal_tokens=tok_ids,
                  relaxed=relaxed)
    return chosen, scores
