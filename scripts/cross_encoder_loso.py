"""Leave-one-source-out κ of a cross-encoder judge that reads the request and the answer together.

Usage: python scripts/cross_encoder_loso.py [--encoder DIR_OR_HF_ID] [--max-length 192] [--epochs 2] [--seed N]
       [--out CSV]

The question this answers: does a judge that reads request and answer jointly transfer across the sources of
the labelled set better than the default judge, whose features read the answer alone? For each source of
safety_study/data/labelled/judge_set.csv in turn, a transformer encoder (by default all-MiniLM-L6-v2, the only
encoder installable here; any Hugging Face encoder folder or id works) is fine-tuned as a binary classifier on
every item of the other sources, request (at most --prompt-tokens tokens) and answer as one pair, mean-pooled,
with a linear head and the positive class weighted by sqrt(negatives / positives). It then scores every item of
the held-out source. Beside it, the default judge's feature set (sentences_rules_shape, C 0.3) is refitted on
the same items, and the mean of the two probabilities is scored too. κ is Cohen's, at threshold 0.5, with a
bootstrap CI over prompts (safety_study.judges.judge_agreement).
"""
import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from safety_study import judges as J
from safety_study.core import REFUSAL, file_sha256, package_file

HERE = Path(__file__).parent
spec = importlib.util.spec_from_file_location("train_default_judge", HERE / "train_default_judge.py")
T = importlib.util.module_from_spec(spec)
spec.loader.exec_module(T)


class PairClassifier(torch.nn.Module):
    def __init__(self, path):
        super().__init__()
        from transformers import AutoModel
        self.encoder = AutoModel.from_pretrained(path)
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask, **kw):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1).clamp(min=1)).squeeze(-1)


def pairs(tok, prompts, answers, max_length, prompt_tokens):
    short = [tok.decode(tok(p, add_special_tokens=False)["input_ids"][:prompt_tokens]) for p in prompts]
    return tok(short, list(answers), truncation="only_second", max_length=max_length, padding=True,
               return_tensors="pt")


def fit_and_score(path, train, test, args, seed):
    from transformers import AutoTokenizer
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(path)
    model = PairClassifier(path)
    y = torch.tensor((train.label == REFUSAL).to_numpy(), dtype=torch.float32)
    pos_weight = torch.tensor(np.sqrt(float((y == 0).sum()) / max(float(y.sum()), 1.0)))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * int(np.ceil(len(train) / args.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (0.1 * steps)) * max(0.0, 1 - s / steps))
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(args.epochs):
        order = rng.permutation(len(train))
        for i in range(0, len(order), args.batch_size):
            b = order[i:i + args.batch_size]
            enc = pairs(tok, train.prompt.iloc[b], train.text.iloc[b], args.max_length, args.prompt_tokens)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(**enc), y[b], pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(test), 64):
            enc = pairs(tok, test.prompt.iloc[i:i + 64], test.text.iloc[i:i + 64], args.max_length, args.prompt_tokens)
            out.append(torch.sigmoid(model(**enc)).numpy())
    return np.concatenate(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default=None, help="encoder folder or HF id (default: the installed all-MiniLM-L6-v2)")
    ap.add_argument("--max-length", type=int, default=192)
    ap.add_argument("--prompt-tokens", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--seed", type=int, default=2510, help="seed of the fine-tuning (weights of the head, batch order)")
    ap.add_argument("--C", type=float, default=0.3, help="regularisation of the refitted default-judge features")
    ap.add_argument("--sources", default=None, help="comma-separated sources to hold out (default: every source)")
    ap.add_argument("--out", default=None, help="CSV of the per-source κ")
    args = ap.parse_args()
    path = args.encoder or str(J.minilm_path())
    data = J.judge_set()
    data["text"] = [J.visible_answer(r, p)[0] for r, p in zip(data.response, data.prompt)]
    emb = T.view_embeddings(data.text.tolist(), file_sha256(package_file(*J.JUDGE_SET))
                            + J.stable_hash([J.answer_views(x) for x in data.text], 16))
    y = data.label.to_numpy()
    sources = data.source.to_numpy()
    held = args.sources.split(",") if args.sources else sorted(np.unique(sources))
    rows = []
    for k, source in enumerate(held):
        t0 = time.time()
        te = np.flatnonzero(sources == source)
        tr = np.flatnonzero(sources != source)
        p_ce = fit_and_score(path, data.iloc[tr], data.iloc[te], args, seed=args.seed + k)
        clf = J.fit_classifier(T.matrix(emb, tr, "sentences_rules_shape"), y[tr], args.C)
        p_v3 = clf.predict_proba(T.matrix(emb, te, "sentences_rules_shape"))[:, 1]
        preds = {"cross-encoder": T.verdicts(p_ce), "default features": T.verdicts(p_v3),
                 "mean of both": T.verdicts((p_ce + p_v3) / 2)}
        table = J.judge_agreement(data.iloc[te].reset_index(drop=True), preds, n_boot=1000, seed=T.SEED)
        for r in table.itertuples():
            rows.append(dict(seed=args.seed, held_out=source, n=len(te), refusals=int((y[te] == REFUSAL).sum()),
                             judge=r.judge, kappa=r.kappa, kappa_ci_low=r.kappa_ci_low, kappa_ci_high=r.kappa_ci_high))
        print(pd.DataFrame(rows[-3:]).round(3).to_string(index=False), f"\n{source}: {time.time() - t0:.0f}s", flush=True)
    out = pd.DataFrame(rows)
    print(out.pivot(index="held_out", columns="judge", values="kappa").round(3).to_string())
    if args.out: out.round(4).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
