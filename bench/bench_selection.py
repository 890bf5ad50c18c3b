"""Direction selection: packed prompts with layer replay (ours) vs the implementation before the selection stage
(bench/_reference_selection.py: left-padded batches, three full forwards per candidate) on the same model, directions,
edit and validation prompts; every candidate (layers 0..n, last position) is scored by both.

Prints whether the scores agree (max |difference| of bypass, induce and KL; goal ≤ 1e-4) and choose the same
candidate, then `bench_selection: <ratio>x (ours <s>, reference <s>)`. `--model` takes a .gguf file (goal on
SmolLM2-135M: ≥ 5x with 16 + 16 validation prompts)."""
import time
import warnings

import _models

warnings.filterwarnings("ignore")


def main():
    p = _models.parser(__doc__)
    p.add_argument("--n-direction", type=int, default=32, help="prompts per label for the directions")
    p.add_argument("--n-val", type=int, default=16, help="validation prompts per label")
    args = p.parse_args()
    model, tok, system, what, load = _models.setup(args)
    import _reference_selection as ref
    from safety_study.directions import compute_directions
    from safety_study.edits import EditSpec
    from safety_study.selection import SelectionSpec, select_direction
    h, l, hv, lv = _models.prompt_split(args.model, args.n_direction, args.n_val)
    dirs = compute_directions(model, tok, h, l, system_prompt=system, progress=False)
    edit = EditSpec()                                   # the default edit: layers [1, n), no embeddings
    t0 = time.perf_counter()
    chosen, ours = select_direction(model, tok, dirs, hv, lv, edit=edit, spec=SelectionSpec(relax=True),
                                    chat=dict(system_prompt=system), progress=False)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_chosen, theirs = ref.select_direction(model, tok, dirs, hv, lv, system_prompt=system, skip_begin=edit.skip_begin,
                                              skip_end=edit.skip_end, embeddings=edit.embeddings, relax=True,
                                              progress=False)
    t_ref = time.perf_counter() - t0
    theirs = theirs.sort_values(["layer", "position"], ignore_index=True)
    diff = max(float((ours[c] - theirs[c]).abs().max()) for c in ("bypass_score", "induce_score", "kl"))
    same = (chosen["layer"], chosen["position"]) == (ref_chosen["layer"], ref_chosen["position"])
    print(f"# {what}, loaded in {load:.1f}s; {len(ours)} candidates, {len(hv)} + {len(lv)} validation prompts, "
          f"scoring {ours.attrs['scoring']}")
    print(f"# scores agree: max |difference| {diff:.1e} ({'within' if diff <= 1e-4 else 'NOT within'} 1e-4); "
          f"chosen layer {chosen['layer']} position {chosen['position']}, reference layer {ref_chosen['layer']} "
          f"position {ref_chosen['position']}: {'same' if same else 'DIFFERENT'}")
    print(f"bench_selection: {t_ref / t_ours:.1f}x (ours {t_ours:.2f}s, reference {t_ref:.2f}s)")


if __name__ == "__main__":
    main()
