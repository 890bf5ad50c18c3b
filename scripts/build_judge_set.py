"""Assemble safety_study/data/labelled/judge_set.csv (and judge_set.json) from its three parts.

Usage: python scripts/build_judge_set.py ANSWERS.parquet

* real answers of SmolLM2-135M-Instruct (ANSWERS.parquet from generate_smollm2_answers.py), labelled
  by the project's annotators in scripts/smollm2_labels.csv (one row per answer: variant, prompt_id,
  label, case, rule; label `drop` removes an answer, e.g. one that repeats the original word for word);
* answers written in the styles of large instruct models (judge_set_written.py, from judge_set_cards.py);
* single hand-written answers (judge_set_literal.py).

The split is drawn once, by prompt, with SEED: prompts are shuffled within their prompt label and
assigned to test until the test split holds at least a quarter of the items.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from judge_set_literal import LITERAL  # noqa: E402
from judge_set_written import written_items  # noqa: E402

from safety_study.core import atomic_path, file_sha256, package_file, stable_hash  # noqa: E402
from safety_study.judges import rule_label  # noqa: E402
from safety_study.prompts import default_prompts  # noqa: E402

SEED, TEST_SHARE = 2510, 0.25
COLUMNS = ["item_id", "prompt_id", "prompt", "prompt_label", "category", "response", "label", "case", "rule",
           "source", "variant", "style", "author", "labelled_by", "split"]
GENERATED = "SmolLM2-135M-Instruct, greedy decoding, 256 new tokens (scripts/generate_smollm2_answers.py)"
WRITTEN = "the project's annotators, in the style of large instruct models"
READ = "the project's annotators, reading the answer, labelling guide v1"
BY_RULE = "the project's annotators, by the guide rule the answer was written to (labelling guide v1)"


def real_part(answers_path):
    a = pd.read_parquet(answers_path)
    lab = pd.read_csv(Path(__file__).parent / "smollm2_labels.csv", keep_default_na=False)
    a["variant_key"] = a.variant.str.replace(r"^abliterated:.*", "abliterated", regex=True)
    m = a.merge(lab, left_on=["variant_key", "prompt_id"], right_on=["variant", "prompt_id"], how="left",
                suffixes=("", "_lab"), validate="one_to_one")
    if m.label.isna().any():
        raise SystemExit(f"{int(m.label.isna().sum())} answers have no label in smollm2_labels.csv")
    m = m[m.label != "drop"]
    return pd.DataFrame(dict(prompt_id=m.prompt_id, prompt=m.prompt, prompt_label=m.prompt_label, category=m.category,
                             response=m.raw_response, label=m.label, case=m.case, rule=m.rule,
                             source="SmolLM2-135M-Instruct", variant=m.variant, style="model output",
                             author=GENERATED, labelled_by=READ))


def written_part(prompts):
    w = pd.DataFrame(written_items(prompts, SEED))
    by_id = prompts.set_index("prompt_id")
    lit = pd.DataFrame(LITERAL, columns=["prompt_id", "label", "case", "rule", "style", "response"])
    lit["prompt"] = lit.prompt_id.map(by_id.prompt)
    lit["prompt_label"] = lit.prompt_id.map(by_id.label)
    lit["category"] = lit.prompt_id.map(by_id.category)
    w = pd.concat([w, lit], ignore_index=True)
    return w.assign(source="written", variant="", author=WRITTEN, labelled_by=BY_RULE)


def split_by_prompt(df):
    rng = np.random.default_rng(SEED)
    test = set()
    for _, g in df.groupby("prompt_label"):
        ids = np.array(sorted(g.prompt_id.unique()))
        rng.shuffle(ids)
        sizes = g.groupby("prompt_id").size()
        n = 0
        for pid in ids:
            if n >= TEST_SHARE * len(g): break
            test.add(pid); n += sizes[pid]
    return np.where(df.prompt_id.isin(test), "test", "train")


def main(answers_path):
    prompts = default_prompts()
    df = pd.concat([real_part(answers_path), written_part(prompts)], ignore_index=True)
    bad = [(r, l) for r, l in zip(df.rule, df.label) if rule_label(r) != l]
    if bad: raise SystemExit(f"labels that contradict their rule: {bad[:5]}")
    df = df.drop_duplicates(["prompt_id", "response"]).reset_index(drop=True)
    df["item_id"] = [stable_hash([s, v, st, p, r], 12) for s, v, st, p, r in
                     zip(df.source, df.variant, df["style"], df.prompt_id, df.response)]
    df["split"] = split_by_prompt(df)
    df = df[COLUMNS].sort_values(["split", "prompt_id", "item_id"]).reset_index(drop=True)
    out = package_file("data", "labelled")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "judge_set.csv") as tmp: df.to_csv(tmp, index=False)
    card = dict(name="judge_set", guide="labelling guide v1 (nbs/21_judges.ipynb)", seed=SEED, test_share=TEST_SHARE,
                split="by prompt: no prompt has answers in both splits", n_items=len(df),
                n_prompts=int(df.prompt_id.nunique()),
                counts={k: {str(a): int(b) for a, b in g.label.value_counts().items()} for k, g in df.groupby("split")},
                by_source={str(k): int(v) for k, v in df.groupby("source").size().items()},
                by_case={str(k): int(v) for k, v in df.groupby("case").size().items()},
                sources={"SmolLM2-135M-Instruct": GENERATED, "written": WRITTEN},
                labelled_by={"SmolLM2-135M-Instruct": READ, "written": BY_RULE},
                sha256=file_sha256(out / "judge_set.csv"))
    with atomic_path(out / "judge_set.json") as tmp: tmp.write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps({k: v for k, v in card.items() if k not in ("sources", "labelled_by")}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
