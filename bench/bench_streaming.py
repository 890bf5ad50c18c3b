"""Peak memory of streaming abliteration (`abliterate_checkpoint`) vs the in-memory path (from_pretrained +
abliterate_model + save_pretrained) on a ≥ 200 MB checkpoint made from a tiny-random Llama config with large dims.

Each path runs in a fresh subprocess; the figure is the growth of peak RSS (VmHWM) over the RSS after imports
(including building a tiny model of the same family on the meta device, which loads the model code).
Prints `bench_streaming: <ratio>x (ours <MB>, reference <MB>)` with ratio = reference / ours."""
import json, os, subprocess, sys, tempfile
from pathlib import Path

import _machine

CHILD = r'''
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)
from transformers import AutoModelForCausalLM
from safety_study.abliterate import abliterate_checkpoint, abliterate_model, save_abliterated
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"): return int(line.split()[1]) / 1024
src, out, mode = sys.argv[1:4]
from safety_study.arch import tiny_config  # warm the model code (a constant of both paths) before the baseline
with torch.device("meta"): AutoModelForCausalLM.from_config(tiny_config("llama", layers=1))
r = torch.randn(1024, generator=torch.Generator().manual_seed(0))
base = hwm(); t0 = time.perf_counter()
if mode == "stream":
    abliterate_checkpoint(src, out, r, progress=False)
else:
    m = AutoModelForCausalLM.from_pretrained(src)
    abliterate_model(m, r)
    save_abliterated(m, None, out, direction=r)
print(json.dumps(dict(peak_mb=hwm() - base, seconds=time.perf_counter() - t0)))
'''


def run(src, out, mode):
    res = subprocess.run([sys.executable, "-c", CHILD, str(src), str(out), mode], capture_output=True, text=True,
                         env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if res.returncode: raise SystemExit(res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    import torch
    torch.set_num_threads(1)
    _machine.print_mm_line()
    from safety_study.arch import tiny_model
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        m = tiny_model("llama", hidden=1024, intermediate=4096, layers=4, vocab=4096)
        m.save_pretrained(t / "src", max_shard_size="100MB")
        size = sum(f.stat().st_size for f in (t / "src").glob("*.safetensors")) / 2**20
        largest = max(p.numel() * p.element_size() for p in m.parameters()) / 2**20
        del m
        ours = run(t / "src", t / "stream", "stream")
        ref = run(t / "src", t / "memory", "memory")
        print(f"# checkpoint {size:.0f} MB in shards, largest tensor {largest:.0f} MB; "
              f"streaming {ours['seconds']:.1f}s, in-memory {ref['seconds']:.1f}s; "
              f"2 x largest tensor + 8 MB working block = {2 * largest + 8:.0f} MB, the rest is fixed cost")
        print(f"bench_streaming: {ref['peak_mb'] / ours['peak_mb']:.1f}x "
              f"(ours {ours['peak_mb']:.0f} MB, reference {ref['peak_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
