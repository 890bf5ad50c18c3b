"""GPU-ready paths on the CPU: a toy checkpoint loaded, edited and run in bf16, dtype and device from a config."""
import pandas as pd
import torch

from safety_study import toy
from safety_study.config import config_from_dict
from safety_study.directions import compute_directions
from safety_study.edits import EditSpec, abliterate_model, rounding_bound, unit_direction
from safety_study.generate import generate_responses
from safety_study.models import load_causal_lm

from _tolerance import within

torch.set_num_threads(1)


def test_toy_in_bf16_end_to_end():
    lm, tok = load_causal_lm("toy:toy-refusals", dtype="bfloat16", device="cpu")
    assert lm.dtype == torch.bfloat16 and lm.device.type == "cpu"
    P = toy.toy_prompts()
    get = lambda lab: P[(P.label == lab) & (P.split == "direction")].prompt.tolist()[:16]
    d = compute_directions(lm, tok, get("harmful"), get("harmless"), progress=False)
    assert d.harmful_mean.dtype == torch.float64 and torch.isfinite(d.harmful_mean).all()
    r = d.direction(d.n_layers)
    W0 = lm.model.layers[1].self_attn.o_proj.weight.detach().double().clone()
    report = abliterate_model(lm, r, EditSpec(skip_begin=0))
    W1 = lm.model.layers[1].self_attn.o_proj.weight
    assert W1.dtype == torch.bfloat16 and (report.dtype == "bfloat16").all()
    # fp64 accumulation, rounded once: the stored weight is the exact edit rounded to bf16, nothing more
    u = unit_direction(r)
    exact = (W0 - torch.outer(u, u @ W0)).to(torch.bfloat16)
    assert torch.equal(W1, exact)
    # bf16 cannot hold an exact zero (reported, not raised): one bf16 rounding of the exact edit leaves, per written
    # vector (Cauchy–Schwarz), ‖uᵀW′‖ ≤ (eps_bf16/2)·‖W′‖
    norms = [getattr(lm.get_submodule(n), p).detach().double().norm() for n, p in zip(report.module, report.param)]
    within("bf16: ‖uᵀW′‖ / its bf16 bound, worst tensor",
           max(a / rounding_bound(w, dtype=torch.bfloat16, k=0.5) for a, w in zip(report.after, norms)), 1.0)
    out = generate_responses(lm, tok, pd.DataFrame({"prompt": P[P.split == "eval"].prompt[:4].tolist()}),
                             max_new_tokens=12, progress=False)
    assert out.response.str.len().gt(0).all()


def test_config_dtype_and_device_reach_the_loader():
    cfg = config_from_dict({"name": "b", "dtype": "bfloat16", "device": "cpu",
                            "checkpoints": [{"name": "t", "model": "toy:toy-raw"}],
                            "prompts": {"source": "toy", "n_direction": 8, "n_eval": 2},
                            "abliteration": {"n_validation": 2}})
    from safety_study.runner import checkpoint_parameters
    p = checkpoint_parameters(cfg, "t")
    lm, _ = load_causal_lm(p["model"], dtype=p["dtype"], device=p["device"])
    assert (p["dtype"], p["device"], lm.dtype) == ("bfloat16", "cpu", torch.bfloat16)
