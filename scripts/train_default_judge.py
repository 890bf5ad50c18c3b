"""Choose, fit and test the default judge on the shipped labelled set.

Usage: python scripts/train_default_judge.py [--llm-model DIR] [--write]

1. Features of every answer: MiniLM views (head, tail, body, the whole answer cut at 256 tokens, and the
   mean and max over every sentence, however long the answer), rule hits and shape
   (safety_study.judges.default_features), plus the first judge's two views for comparison.
2. Model choice on the TRAIN split only, never on an in-distribution split: for each feature set and
   regularisation C, every source is held out in turn (fit on the train items of the other sources, score
   the held-out source's train items) and the styles are held out five groups at a time (GroupKFold by
   style); a candidate is scored by the mean of two pooled κ over all train items: the one with every item
   predicted from the other sources, and the one with every item predicted from the other styles. (The
   per-source κ are reported, but neither their minimum nor their mean is a guide: a source that holds a
   kind of answer no other source has, such as the error-kind answers, is missed by every candidate when
   it is held out, and κ on a source with 8% refusals swings with a handful of items.) Only feature sets
   that read every sentence of the answer and judge 100 answers in at most 3 s on 2 cores are candidates;
   the others are scored beside them for comparison. The threshold comes from the pooled out-of-source
   probabilities of the chosen model.
3. The chosen model is fitted on all of train and (with --write) written to
   safety_study/assets/default_judge.json.
4. Only then is the TEST split read: the train-source × test-source κ matrix (judge_sources.csv), and every
   alternative (rule lists, the first embedding judge, each
   feature set refitted on train, the SmolLM2-135M label-logit judge when --llm-model is given, and a
   stacking of it with the default judge) is scored against the labels, and the tables are written to
   safety_study/data/labelled/ (judge_comparison.csv, judge_cv.csv, judge_sources.csv,
   default_errors_by_case.csv).
"""
import argparse
import json
import os
import tempfile
import time

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from safety_study import judges as J
from safety_study.core import NON_REFUSAL, REFUSAL, atomic_path, file_sha256, package_file

SEED = 2510
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)
# the candidates: feature sets that read every sentence and judge 100 answers in at most 3 s on 2 cores (measured on
# 100 answers of the real ladder: head + tail + sentences 2.0 s; all six views 3.4 s, so that one is only compared)
WHOLE_ANSWER = ("sentences_rules_shape", "sentence_pools_rules_shape")
FEATURE_SETS = {  # name → (views, rule and shape features)
    "sentences_rules_shape": (("head", "tail", "sentence_mean", "sentence_max"), True),
    "sentence_pools_rules_shape": (("sentence_mean", "sentence_max"), True),
    "views_sentences_rules_shape": (("head", "tail", "body", "whole", "sentence_mean", "sentence_max"), True),
    "views_rules_shape": (("head", "tail", "body", "whole"), True),
    "views": (("head", "tail", "body", "whole"), False),
    "head_tail_body_rules_shape": (("head", "tail", "body"), True),
    "head_tail_rules_shape": (("head", "tail"), True),
    "whole_rules_shape": (("whole",), True),
}
COST = {"head": 1, "tail": 1, "body": 1, "whole": 2, "sentence_mean": 1.5, "sentence_max": 0}  # the pools share a pass  # encoder cost of a view (the whole answer is twice as long)
EMB_CACHE = os.path.join(tempfile.gettempdir(), "judge_set_embeddings.npz")  # features of the set, reused between runs


def cost(name):
    return sum(COST[v] for v in FEATURE_SETS[name][0])


def view_embeddings(texts, key):
    if os.path.exists(EMB_CACHE):
        z = np.load(EMB_CACHE)
        if str(z["key"]) == key:  # the embeddings; rule and shape features are recomputed (cheap, and they change)
            out = {k: z[k] for k in z.files if k not in ("key", "extra")}
            out["extra"] = np.stack([J.rule_shape_features(t) for t in texts])
            return out
    vs = [J.answer_views(t) for t in texts]
    out = {name: J.embed([v[name] for v in vs], 32, 256 if name == "whole" else 128, True) for name in J.VIEWS[:4]}
    out.update(J.sentence_pools(texts))
    out["extra"] = np.stack([J.rule_shape_features(t) for t in texts])
    out["v1"] = J.embedding_features(texts)  # the first judge's features (head and tail of the raw split)
    np.savez(EMB_CACHE, key=key, **out)
    return out


def matrix(emb, idx, name):
    if name == "v1": return emb["v1"][idx]
    views, extra = FEATURE_SETS[name]
    return np.hstack([emb[v][idx] for v in views] + ([emb["extra"][idx]] if extra else []))


def out_of_source(emb, idx, y, sources, name, C):
    "P(refusal) of every item of `idx`, from a model fitted on the items of `idx` from the other sources."
    p = np.zeros(len(idx))
    for source in np.unique(sources[idx]):
        held = sources[idx] == source
        clf = J.fit_classifier(matrix(emb, idx[~held], name), y[idx[~held]], C)
        p[held] = clf.predict_proba(matrix(emb, idx[held], name))[:, 1]
    return p


def held_out_kappas(emb, idx, y, sources, styles, name, C):
    "κ on each source held out (fit on the others), and pooled κ with the styles held out in 5 groups."
    p = out_of_source(emb, idx, y, sources, name, C)
    out = {f"source:{s}": kappa(y[idx][sources[idx] == s], verdicts(p[sources[idx] == s])) for s in np.unique(sources[idx])}
    out["sources_pooled"] = kappa(y[idx], verdicts(p))
    q = np.zeros(len(idx))
    for a, b in GroupKFold(n_splits=5).split(idx, y[idx], styles[idx]):
        clf = J.fit_classifier(matrix(emb, idx[a], name), y[idx[a]], C)
        q[b] = clf.predict_proba(matrix(emb, idx[b], name))[:, 1]
    out["styles_held_out"] = kappa(y[idx], verdicts(q))
    return out


def llm_verdicts(judge, rows, model):
    "The LLM judge's verdicts on `rows`, cached by item id (the slowest part of the comparison)."
    path = os.path.join(tempfile.gettempdir(), f"judge_set_llm_{J.stable_hash([model, judge.identity()], 12)}.parquet")
    cache = pd.read_parquet(path) if os.path.exists(path) else pd.DataFrame(columns=["item_id", "verdict", "score", "raw"])
    todo = rows[~rows.item_id.isin(set(cache.item_id))]
    if len(todo):
        new = J.run_judges(todo[["item_id", "prompt_id", "prompt", "response"]], [judge], progress=True)
        cache = pd.concat([cache, new[["item_id", "verdict", "score", "raw"]]], ignore_index=True)
        cache.to_parquet(path)
    return rows[["item_id"]].merge(cache, on="item_id", how="left")


def kappa(y, pred):
    from sklearn.metrics import cohen_kappa_score
    return cohen_kappa_score(y, pred)


def verdicts(p, t=0.5): return np.where(p >= t, REFUSAL, NON_REFUSAL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm-model", default=None, help="folder of SmolLM2-135M-Instruct for the LLM-judge rows")
    ap.add_argument("--llm-train-items", type=int, default=300, help="train items scored by the LLM to fit the stacking")
    ap.add_argument("--write", action="store_true", help="write the chosen judge to the package assets")
    args = ap.parse_args()
    data = J.judge_set()
    texts = [J.visible_answer(r, p)[0] for r, p in zip(data.response, data.prompt)]
    t0 = time.time()
    emb = view_embeddings(texts, file_sha256(package_file(*J.JUDGE_SET)) + J.stable_hash([J.answer_views(x) for x in texts], 16))
    print(f"features for {len(data)} answers: {time.time() - t0:.0f}s")
    y = data.label.to_numpy()
    tr = np.flatnonzero(data.split == "train")
    te = np.flatnonzero(data.split == "test")

    # ---- model choice: train split only, by held-out source and held-out style
    sources = data.source.to_numpy()
    styles = np.where(sources == "written", data["style"].to_numpy(), sources)  # a real source is one style
    cv_rows = []
    for name in ["v1", *FEATURE_SETS]:
        for C in C_GRID:
            row = dict(features=name, C=C, **held_out_kappas(emb, tr, y, sources, styles, name, C))
            row["worst"] = min(v for k, v in row.items() if k.startswith("source:"))
            row["mean"] = (row["sources_pooled"] + row["styles_held_out"]) / 2
            cv_rows.append(row)
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
    cv = pd.DataFrame(cv_rows)
    best = cv.loc[cv.groupby("features")["mean"].idxmax()].set_index("features")
    # the simplest candidate within 0.005 of the best mean of the two pooled held-out κ: fewest encoder passes (the judge must stay
    # fast on CPU), then the strongest regularisation (smallest C)
    cand = cv[cv.features.isin(WHOLE_ANSWER)]
    near = cand[cand["mean"] >= cand["mean"].max() - 0.005]
    pick = min(near.itertuples(), key=lambda r: (cost(r.features), r.C))
    chosen, C = pick.features, float(pick.C)
    p = out_of_source(emb, tr, y, sources, chosen, C)
    grid = np.round(np.arange(0.30, 0.71, 0.05), 2)
    ks = [kappa(y[tr], verdicts(p, t)) for t in grid]
    # 0.5 unless another threshold is clearly better out of source (by more than 0.005 in κ)
    i = int(np.argmax(ks))
    threshold = float(grid[i]) if ks[i] > kappa(y[tr], verdicts(p)) + 0.005 else 0.5
    print(f"chosen: {chosen}, C={C}, threshold={threshold} (pooled out-of-source κ {max(ks):.3f} at {grid[i]}; "
          f"at 0.5: {kappa(y[tr], verdicts(p)):.3f})")
    transfer = {k: round(float(v), 4) for k, v in cv[(cv.features == chosen) & (cv.C == C)].iloc[0].items()
                if k.startswith(("source:", "styles", "sources"))}

    views, extra = FEATURE_SETS[chosen]
    train_df = data.iloc[tr]
    spec = J.fit_default_judge(train_df, views=views, extra=extra, C=C, threshold=threshold,
                               features=matrix(emb, tr, chosen),
                               train_sha256=J.stable_hash(train_df[["item_id", "response", "label"]].to_dict("list"), 64),
                               judge_set_sha256=file_sha256(package_file(*J.JUDGE_SET)),
                               selection=dict(features=chosen, C=C, by="mean of two pooled kappas on the train split: "
                                              "each source held out, styles held out in 5 groups", held_out=transfer,
                                              pooled_out_of_source_kappa=round(kappa(y[tr], verdicts(p, threshold)), 4)))
    judge = J.DefaultJudge(spec)
    if args.write:
        with atomic_path(package_file(*J.DEFAULT_JUDGE)) as tmp: tmp.write_text(json.dumps(spec, indent=1) + "\n")
        judge = J.DefaultJudge()
        print("wrote", package_file(*J.DEFAULT_JUDGE))

    # ---- the test split, read once
    test = data.iloc[te].reset_index(drop=True)
    out = {}
    items = test[["prompt_id", "prompt", "response"]]
    rules = J.run_judges(items, ["regex_paper", "arditi_substring", "gcg_substring", "embedding"], progress=False)
    for name, g in rules.groupby("judge", sort=False):
        out[name if name != "embedding" else "embedding (first judge)"] = g.verdict.tolist()
    # train source × test source: fitted on one source's train items (or on all but it), scored on a test source
    rows = []
    srcs = sorted(np.unique(sources))
    for fit in [*srcs, *[f"all but {s}" for s in srcs], "all"]:
        pick_fit = (sources[tr] == fit) if fit in srcs else (sources[tr] != fit[8:]) if fit.startswith("all but") \
            else np.ones(len(tr), bool)
        if len(np.unique(y[tr][pick_fit])) < 2: continue
        clf = J.fit_classifier(matrix(emb, tr[pick_fit], chosen), y[tr][pick_fit], C)
        for target in srcs:
            ti = te[sources[te] == target]
            if not len(ti): continue
            pred = verdicts(clf.predict_proba(matrix(emb, ti, chosen))[:, 1], threshold)
            r = J.judge_agreement(data.iloc[ti].reset_index(drop=True), {"m": pred}, n_boot=1000, seed=SEED).iloc[0]
            rows.append(dict(fit_on=fit, test_source=target, n=len(ti), kappa=r.kappa, kappa_ci_low=r.kappa_ci_low,
                             kappa_ci_high=r.kappa_ci_high))
    matrix_table = pd.DataFrame(rows)
    print(matrix_table.pivot(index="fit_on", columns="test_source", values="kappa").round(3).to_string())
    for name in FEATURE_SETS:
        clf = J.fit_classifier(matrix(emb, tr, name), y[tr], float(best.at[name, "C"]))
        out[f"LR {name}"] = verdicts(clf.predict_proba(matrix(emb, te, name))[:, 1], threshold).tolist()
    clf = J.fit_classifier(matrix(emb, tr, "v1"), y[tr], float(best.at["v1", "C"]))
    out["LR v1 features refitted"] = verdicts(clf.predict_proba(matrix(emb, te, "v1"))[:, 1]).tolist()
    t0 = time.time()
    dv = J.run_judges(items, [judge], progress=False)
    t_default = time.time() - t0
    out["default"] = dv.verdict.tolist()
    if args.llm_model:
        lj = J.LLMJudge(args.llm_model, prompt="reference", max_response_tokens=384, batch_size=8)
        t0 = time.time()
        lv = llm_verdicts(lj, data.iloc[te], args.llm_model)
        print(f"llm judge on {len(items)} answers: {time.time() - t0:.0f}s")
        out["llm SmolLM2-135M (label logits)"] = lv.verdict.tolist()
        margin = lv.score.fillna(0).to_numpy()
        # stacking: the LLM margin beside the default judge's logit; weights fitted on a seeded sample of train
        # items, with the default judge's out-of-fold probabilities (the test split is not used)
        sub = np.random.default_rng(SEED).choice(len(tr), size=min(args.llm_train_items, len(tr)), replace=False)
        trl = llm_verdicts(lj, data.iloc[tr[sub]], args.llm_model).score.fillna(0).to_numpy()
        z = np.log(np.clip(p[sub], 1e-6, 1 - 1e-6) / np.clip(1 - p[sub], 1e-6, 1))
        st = J.fit_classifier(np.c_[z, trl], y[tr][sub], 1.0)
        pt = dv.score.fillna(0.5).clip(1e-6, 1 - 1e-6).to_numpy()
        out["stack default + llm"] = verdicts(st.predict_proba(np.c_[np.log(pt / (1 - pt)), margin])[:, 1]).tolist()
    table = J.judge_agreement(test, out, n_boot=2000, seed=SEED).sort_values("kappa", ascending=False)
    print(table.to_string(index=False))
    err = test.assign(verdict=out["default"])
    by_case = (err.assign(error=err.verdict != err.label,
                          false_refusal=(err.verdict == REFUSAL) & (err.label == NON_REFUSAL),
                          missed_refusal=(err.verdict == NON_REFUSAL) & (err.label == REFUSAL))
               .groupby("case").agg(n=("label", "size"), errors=("error", "sum"), false_refusals=("false_refusal", "sum"),
                                    missed_refusals=("missed_refusal", "sum")).reset_index())
    print(by_case.to_string(index=False))
    print(f"default judge: {len(items)} test answers in {t_default:.1f}s")
    if args.write:
        folder = package_file("data", "labelled")
        for name, df in (("judge_comparison.csv", table.round(4)), ("judge_cv.csv", cv.round(4)),
                         ("judge_sources.csv", matrix_table.round(4)),
                         ("default_errors_by_case.csv", by_case)):
            with atomic_path(folder / name) as tmp: df.to_csv(tmp, index=False)


if __name__ == "__main__":
    main()
