"""Assemble safety_study/data/labelled/judge_set.csv (and judge_set.json) from its three parts.

Usage: python scripts/build_judge_set.py ANSWERS.parquet [--out DIR]
       python scripts/build_judge_set.py --real-from-set [JUDGE_SET.csv] [--out DIR]

* real answers of SmolLM2-135M-Instruct (ANSWERS.parquet from generate_smollm2_answers.py), labelled
  by the project's annotators in sources/smollm2_labels.csv (one row per answer: variant, prompt_id,
  label, case, rule; label `drop` removes an answer, e.g. one that repeats the original word for word);
* answers written in the styles of large instruct models (judge_set_written.py, from the cards and
  phrases in sources/: harmful_cards.yaml, harmless_cards.yaml, written_phrases.yaml);
* single hand-written answers (sources/literal_answers.jsonl);
* written answers of the four kinds the v1 judge missed on real answers of large models (labelling guide
  v2, sources/error_kinds.yaml: declines inside long lectures, apparent compliance that delivers the
  opposite, stalling with questions, prompt echoes glued to the role header), with hard negatives;
* real answers of the SmolLM2-135M ladder (nbs/05_ladder.ipynb), original and abliterated, from a run of
  `make study-real`, labelled by reading them under guide v2 (sources/ladder_answers.csv).

sources/ is safety_study/data/labelled/sources/ (read by judge_set_sources.py). With --real-from-set the
real answers are taken from an existing judge set (default: the shipped one) instead of the parquet, after
checking them against smollm2_labels.csv: this rebuilds the set offline, without the model run, and
reproduces the shipped file byte for byte while the sources and this code are unchanged. --out writes the
set and its card to DIR instead of the package.

The split is drawn once, by prompt, with SEED: prompts are shuffled within their prompt label and
assigned to test until the test split holds at least a quarter of the items. The guide-v1 sources are split
together, as when the set was first built, and each guide-v2 source is split on its own, so adding a source
never moves an item of another between the splits.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from judge_set_sources import SOURCES, literal_answers  # noqa: E402
from judge_set_written import written_items  # noqa: E402

from safety_study.core import atomic_path, file_sha256, package_file, stable_hash  # noqa: E402
from safety_study.judges import rule_label, three_way, visible_answer  # noqa: E402
from safety_study.prompts import load_prompts  # noqa: E402


def default_prompts():
    "Every prompt the written answers were written for: the study's pool and the real ladder's training prompts."
    return pd.concat([load_prompts(package_file("data", name), english_only=True)
                      for name in ("prompts.csv", "ladder_prompts.csv")], ignore_index=True)

SEED, TEST_SHARE = 2510, 0.25
COLUMNS = ["item_id", "prompt_id", "prompt", "prompt_label", "category", "response", "label", "case", "rule",
           "source", "variant", "style", "author", "labelled_by", "split"]
PART_COLUMNS = COLUMNS[1:-1]
REAL = "SmolLM2-135M-Instruct"
GENERATED = "SmolLM2-135M-Instruct, greedy decoding, 256 new tokens (scripts/generate_smollm2_answers.py)"
WRITTEN = "the project's annotators, in the style of large instruct models"
READ = "the project's annotators, reading the answer, labelling guide v1"
BY_RULE = "the project's annotators, by the guide rule the answer was written to (labelling guide v1)"
LABELS = SOURCES / "smollm2_labels.csv"
ERROR_KINDS, LADDER = "written: error kinds", "SmolLM2-135M ladder"
KINDS_WRITTEN = ("the project's annotators: the four kinds of answer the v1 judge missed on real answers of large "
                 "models, and hard negatives (sources/error_kinds.yaml)")
LADDER_ANSWERS = ("the real SmolLM2-135M ladder (nbs/05_ladder.ipynb), original and abliterated, greedy, 64 new "
                  "tokens, from `make study-real` (sources/ladder_answers.csv)")
BY_GUIDE_V2 = "the project's annotators, by the guide rule the answer was written to (labelling guide v2)"
READ_V2 = "the project's annotators, reading the answer, labelling guide v2"
# (kind, label) of an error-kinds item → (guide rule, case)
KIND_RULES = {("lecture_middle", "REFUSAL"): ("R4", "lecture_middle"),
              ("lecture_middle", "NON_REFUSAL"): ("C2", "answer_with_lecture"),
              ("opposite_delivery", "REFUSAL"): ("R8", "opposite_delivery"),
              ("opposite_delivery", "NON_REFUSAL"): ("C1", "sure_and_delivers"),
              ("clarifying_stall", "REFUSAL"): ("R9", "clarifying_stall"),
              ("clarifying_stall", "NON_REFUSAL"): ("C1", "question_then_answer"),
              ("glued_header", "REFUSAL"): ("S3+R1", "glued_header"),
              ("glued_header", "NON_REFUSAL"): ("S3+C1", "glued_header")}


def _labels():
    return pd.read_csv(LABELS, keep_default_na=False)


def _variant_key(variant):
    return variant.str.replace(r"^abliterated:.*", "abliterated", regex=True)


def real_part(answers_path):
    "The labelled real answers, from the answers of generate_smollm2_answers.py and smollm2_labels.csv."
    a = pd.read_parquet(answers_path)
    a["variant_key"] = _variant_key(a.variant)
    m = a.merge(_labels(), left_on=["variant_key", "prompt_id"], right_on=["variant", "prompt_id"], how="left",
                suffixes=("", "_lab"), validate="one_to_one")
    if m.label.isna().any():
        raise SystemExit(f"{int(m.label.isna().sum())} answers have no label in {LABELS}")
    m = m[m.label != "drop"]
    return pd.DataFrame(dict(prompt_id=m.prompt_id, prompt=m.prompt, prompt_label=m.prompt_label, category=m.category,
                             response=m.raw_response, label=m.label, case=m.case, rule=m.rule,
                             source=REAL, variant=m.variant, style="model output",
                             author=GENERATED, labelled_by=READ))


def real_part_from_set(path=None):
    "The real answers of an existing judge set (default: the shipped one), checked against smollm2_labels.csv."
    path = Path(path) if path else package_file("data", "labelled", "judge_set.csv")
    cur = pd.read_csv(path, keep_default_na=False, dtype=str)
    real = cur[cur.source == REAL][PART_COLUMNS].reset_index(drop=True)
    lab = _labels()
    lab = lab[lab.label != "drop"]
    m = real.assign(variant_key=_variant_key(real.variant)).merge(
        lab, left_on=["variant_key", "prompt_id"], right_on=["variant", "prompt_id"], how="outer",
        suffixes=("", "_lab"), indicator=True)
    if (m._merge != "both").any():
        raise SystemExit(f"{path}: {int((m._merge == 'left_only').sum())} real answers have no label in {LABELS}, "
                         f"{int((m._merge == 'right_only').sum())} labels have no answer")
    for col in ("label", "case", "rule"):
        bad = m[m[col] != m[f"{col}_lab"]]
        if len(bad):
            raise SystemExit(f"{path}: {len(bad)} real answers disagree with {LABELS} on `{col}`, e.g. "
                             f"{bad.prompt_id.iloc[0]} ({bad.variant.iloc[0]})")
    return real


def written_part(prompts):
    "The written answers (cards and styles) and the single hand-written ones, with their provenance."
    w = pd.DataFrame(written_items(prompts, SEED))
    by_id = prompts.set_index("prompt_id")
    lit = pd.DataFrame(literal_answers(), columns=["prompt_id", "label", "case", "rule", "style", "response"])
    unknown = sorted(set(lit.prompt_id) - set(by_id.index))
    if unknown: raise SystemExit(f"{SOURCES / 'literal_answers.jsonl'}: prompt_ids not in the default prompts: {unknown[:5]}")
    lit["prompt"] = lit.prompt_id.map(by_id.prompt)
    lit["prompt_label"] = lit.prompt_id.map(by_id.label)
    lit["category"] = lit.prompt_id.map(by_id.category)
    w = pd.concat([w, lit], ignore_index=True)
    return w.assign(source="written", variant="", author=WRITTEN, labelled_by=BY_RULE)


def error_kinds_part():
    "The written error-kind answers and their hard negatives (guide v2), one prompt id per distinct prompt."
    import yaml
    items = yaml.safe_load((SOURCES / "error_kinds.yaml").read_text())["items"]
    rows = []
    for item in items:
        if (item["kind"], item["label"]) not in KIND_RULES:
            raise SystemExit(f"{SOURCES / 'error_kinds.yaml'}: unknown kind/label {item['kind']!r}/{item['label']!r}")
        rule, case = KIND_RULES[item["kind"], item["label"]]
        rows.append(dict(prompt_id=stable_hash(["error_kinds", item["prompt"]], 12), prompt=item["prompt"],
                         prompt_label=item["prompt_label"], category="", response=item["response"],
                         label=item["label"], case=case, rule=rule, source=ERROR_KINDS,
                         variant=item.get("format") or "", style=item["kind"] + ("" if item["label"] == "REFUSAL"
                                                                                 else "_negative"),
                         author=KINDS_WRITTEN, labelled_by=BY_GUIDE_V2))
    return pd.DataFrame(rows)


def ladder_part():
    "The real ladder's answers (sources/ladder_answers.csv), labelled by reading them; label `drop` removes one."
    a = pd.read_csv(SOURCES / "ladder_answers.csv", keep_default_na=False)
    a = a[a.label != "drop"]
    return pd.DataFrame(dict(prompt_id=a.prompt_id, prompt=a.prompt, prompt_label=a.prompt_label, category=a.category,
                             response=a.response, label=a.label, case=a.case, rule=a.rule, source=LADDER,
                             variant=a.checkpoint + ":" + a.variant, style="model output", author=LADDER_ANSWERS,
                             labelled_by=READ_V2))


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


def _identified(df):
    bad = [(r, l) for r, l in zip(df.rule, df.label) if rule_label(r) != l]
    if bad: raise SystemExit(f"labels that contradict their rule: {bad[:5]}")
    df = df.drop_duplicates(["prompt_id", "response"]).reset_index(drop=True)
    df["item_id"] = [stable_hash([s, v, st, p, r], 12) for s, v, st, p, r in
                     zip(df.source, df.variant, df["style"], df.prompt_id, df.response)]
    df["split"] = split_by_prompt(df)
    return df


def assemble(real, prompts=None):
    "The judge set as a table: the v1 parts (real, written), then each v2 part; deduplicated, identified, split, sorted."
    prompts = default_prompts() if prompts is None else prompts
    parts = [_identified(pd.concat([real, written_part(prompts)], ignore_index=True)),
             _identified(error_kinds_part()), _identified(ladder_part())]
    if shared := set(parts[1].prompt_id) & set(parts[0].prompt_id):
        raise SystemExit(f"error-kind prompts that are also v1 prompts: {sorted(shared)[:3]}")
    known = dict(zip(parts[0].prompt_id, parts[0].split))  # a prompt the v1 sources have stays in its split
    parts[2]["split"] = [known.get(pid, split) for pid, split in zip(parts[2].prompt_id, parts[2].split)]
    df = pd.concat(parts, ignore_index=True)
    return df[COLUMNS].sort_values(["split", "prompt_id", "item_id"]).reset_index(drop=True)


def three_way_counts(df):
    "Items per (source, three-way kind): refusal / compliance / evasive (guide v2; judges.three_way)."
    kinds = [three_way(label, visible_answer(response, prompt)[0], rule)
             for label, response, prompt, rule in zip(df.label, df.response, df.prompt, df.rule)]
    counts = pd.Series(kinds, index=df.source.to_numpy()).groupby(level=0).value_counts()
    return {str(source): {str(kind): int(n) for kind, n in group.droplevel(0).items()}
            for source, group in counts.groupby(level=0)}


def card(df, sha256):
    return dict(name="judge_set", guide="labelling guide v2 (nbs/27_judges.ipynb); the v1 sources were labelled under "
                "v1, whose labels v2 keeps", seed=SEED, test_share=TEST_SHARE,
                split="by prompt: no prompt has answers in both splits", n_items=len(df),
                n_prompts=int(df.prompt_id.nunique()),
                counts={k: {str(a): int(b) for a, b in g.label.value_counts().items()} for k, g in df.groupby("split")},
                by_source={str(k): int(v) for k, v in df.groupby("source").size().items()},
                by_case={str(k): int(v) for k, v in df.groupby("case").size().items()},
                by_three_way=three_way_counts(df),
                sources={REAL: GENERATED, "written": WRITTEN, ERROR_KINDS: KINDS_WRITTEN, LADDER: LADDER_ANSWERS},
                labelled_by={REAL: READ, "written": BY_RULE, ERROR_KINDS: BY_GUIDE_V2, LADDER: READ_V2},
                sha256=sha256)


def write(df, out=None):
    "Write judge_set.csv and judge_set.json to `out` (default: the package's data/labelled/); return the card."
    out = Path(out) if out else package_file("data", "labelled")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "judge_set.csv") as tmp: df.to_csv(tmp, index=False)
    c = card(df, file_sha256(out / "judge_set.csv"))
    with atomic_path(out / "judge_set.json") as tmp: tmp.write_text(json.dumps(c, indent=1) + "\n")
    return c


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("answers", nargs="?", help="ANSWERS.parquet from generate_smollm2_answers.py")
    ap.add_argument("--real-from-set", nargs="?", const="", default=None, metavar="JUDGE_SET.csv",
                    help="take the real answers from an existing judge set (default: the shipped one)")
    ap.add_argument("--out", default=None, help="folder for judge_set.csv and judge_set.json (default: the package)")
    args = ap.parse_args(argv)
    if (args.answers is None) == (args.real_from_set is None):
        ap.error("give either ANSWERS.parquet or --real-from-set")
    real = real_part(args.answers) if args.answers else real_part_from_set(args.real_from_set or None)
    c = write(assemble(real), args.out)
    print(json.dumps({k: v for k, v in c.items() if k not in ("sources", "labelled_by")}, indent=1))


if __name__ == "__main__":
    main()
