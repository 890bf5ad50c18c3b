"""Direction selection: packed prompts with layer replay (ours) vs the implementation before the selection stage
(bench/_reference_selection.py: left-padded batches, three full forwards per candidate) on the same model, directions,
edit and validation prompts; every candidate (layers 0..n, last position) is scored by both.

Ours runs twice: with the pruned scan (the default: only the scores that can change the choice) and the full scan
(every score). Prints whether the scores agree (max |difference| of bypass, induce and KL over the scores computed;
goal ≤ 1e-4) and choose the same candidate, then `bench_selection: <ratio>x` (pruned) and `bench_selection_full:
<ratio>x`. `--model` takes a .gguf file (goal on SmolLM2-135M: ≥ 5x with 16 + 16 validation prompts)."""
import time
import warnings

import _machine
import _models

warnings.filterwarnings("ignore")


def main():
    p = _models.parser(__doc__)
    p.add_argument("--n-direction", type=int, default=32, help="prompts per label for the directions")
    p.add_argument("--n-val", type=int, default=16, help="validation prompts per label")
    args = p.parse_args()
    model, tok, system, what, load = _models.setup(args)
    _machine.print_mm_line()
    import _reference_selection as ref
    from safety_study.directions import compute_directions
    from safety_study.edits import EditSpec
    from safety_study.selection import SelectionSpec, select_direction
    h, l, hv, lv = _models.prompt_split(args.model, args.n_direction, args.n_val)
    dirs = compute_directions(model, tok, h, l, system_prompt=system, progress=False)
    edit = EditSpec()                                   # the default edit: layers [1, n), no embeddings
    runs = {}
    for scan in ("pruned", "full"):
        t0 = time.perf_counter()
        chosen, scores = select_direction(model, tok, dirs, hv, lv, edit=edit, spec=SelectionSpec(relax=True, scan=scan),
                                          chat=dict(system_prompt=system), progress=False)
        runs[scan] = chosen, scores, time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_chosen, theirs = ref.select_direction(model, tok, dirs, hv, lv, system_prompt=system, skip_begin=edit.skip_begin,
                                              skip_end=edit.skip_end, embeddings=edit.embeddings, relax=True,
                                              progress=False)
    t_ref = time.perf_counter() - t0
    theirs = theirs.sort_values(["layer", "position"], ignore_index=True)
    full = runs["full"][1]
    print(f"# {what}, loaded in {load:.1f}s; {len(full)} candidates, {len(hv)} + {len(lv)} validation prompts, "
          f"scoring {full.attrs['scoring']}")
    for scan, (chosen, scores, _) in runs.items():
        diff = max(float((scores[c] - theirs[c]).abs().max()) for c in ("bypass_score", "induce_score", "kl"))
        same = (chosen.layer, chosen.position) == (ref_chosen["layer"], ref_chosen["position"])
        n = sum(scores.attrs["computed"].values())
        print(f"# {scan} scan: {n} scores computed; max |difference| from the reference {diff:.1e} "
              f"({'within' if diff <= 1e-4 else 'NOT within'} 1e-4); chosen layer {chosen.layer} position "
              f"{chosen.position}, reference layer {ref_chosen['layer']} position {ref_chosen['position']}: "
              f"{'same' if same else 'DIFFERENT'}")
    t_ours, t_full = runs["pruned"][2], runs["full"][2]
    print(f"bench_selection: {t_ref / t_ours:.1f}x (ours {t_ours:.2f}s with the pruned scan, reference {t_ref:.2f}s)")
    print(f"bench_selection_full: {t_ref / t_full:.1f}x (ours {t_full:.2f}s scoring every candidate, reference {t_ref:.2f}s)")


if __name__ == "__main__":
    main()
