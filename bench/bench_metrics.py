"""Cohen's kappa with a prompt-cluster bootstrap: ours (per-prompt 2x2 tables resampled with multinomial weights,
vectorised) vs the reference method — resample prompt ids, rebuild the item table and call
scikit-learn's `cohen_kappa_score` per replicate — on the same synthetic study (10 checkpoints x 2 variants x
100 prompts, two judges, 1000 resamples). Also checks that both give the same interval within Monte Carlo error.

Prints `bench_metrics: <ratio>x (ours <s>, reference <s>)`."""
import time

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score

from safety_study.core import ITEM_KEYS
from safety_study.metrics import pair_agreement

import _machine

_machine.print_mm_line()

N_BOOT = 1000
rng = np.random.default_rng(0)
rows = []
for c in range(10):
    for v in ("original", "abliterated"):
        for i in range(100):
            truth = rng.random() < (0.7 if i < 50 and v == "original" else 0.15)
            for judge, err in (("a", 0.08), ("b", 0.12)):
                rows.append(dict(study="bench", checkpoint=f"c{c}", variant=v, prompt_id=f"p{i}",
                                 label="harmful" if i < 50 else "harmless", judge=judge,
                                 verdict="REFUSAL" if truth ^ (rng.random() < err) else "NON_REFUSAL"))
j = pd.DataFrame(rows)

t0 = time.perf_counter()
ours = pair_agreement(j, strata=(), n_boot=N_BOOT, seed=0).iloc[0]
t_ours = time.perf_counter() - t0

t0 = time.perf_counter()
w = j.pivot_table(index=ITEM_KEYS, columns="judge", values="verdict", aggfunc="first").reset_index()
groups = {p: g for p, g in w.groupby("prompt_id")}
pids = np.array(list(groups))
r = np.random.default_rng(1)
ks = []
for _ in range(N_BOOT):
    s = pd.concat([groups[p] for p in r.choice(pids, len(pids))])
    ks.append(cohen_kappa_score(s["a"], s["b"]))
ref_lo, ref_hi = np.percentile(ks, [2.5, 97.5])
t_ref = time.perf_counter() - t0

assert abs(ours.kappa_ci_low - ref_lo) < 0.03 and abs(ours.kappa_ci_high - ref_hi) < 0.03, \
    (ours.kappa_ci_low, ours.kappa_ci_high, ref_lo, ref_hi)
print(f"bench_metrics: {t_ref / t_ours:.1f}x (ours {t_ours:.3f}s, reference {t_ref:.3f}s)")
