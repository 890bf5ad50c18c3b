"""The bound every benchmark's ratio is read beside: this machine's fp32 `torch.mm` throughput, measured in the same
run and at the same thread count as the benchmark (the machine is shared, so a rate from another run says little)."""
import time


def mm_rate(m: int = 2048, k: int = 1024, n: int = 1024, seconds: float = 0.5, repeat: int = 5):
    """(best, median) GFLOP/s of fp32 `torch.mm` of (m, k) @ (k, n) on random data at the current torch thread count:
    `repeat` timings of as many products as fill about `seconds` each."""
    import torch
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    torch.mm(a, b)                                                    # warm-up
    t0 = time.perf_counter()
    torch.mm(a, b)
    one = max(time.perf_counter() - t0, 1e-6)
    calls = max(1, int(seconds / repeat / one))
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(calls):
            torch.mm(a, b)
        rates.append(2 * m * k * n * calls / (time.perf_counter() - t0) / 1e9)
    rates.sort()
    return rates[-1], rates[len(rates) // 2]


def mm_line(m: int = 2048, k: int = 1024, n: int = 1024) -> str:
    "The line every benchmark prints: the machine's measured fp32 torch.mm rate at its thread count."
    import torch
    best, med = mm_rate(m, k, n)
    return (f"# machine: torch.mm fp32 ({m}x{k} @ {k}x{n}, {torch.get_num_threads()} thread(s)) {best:.0f} GFLOP/s "
            f"best, {med:.0f} median of 5")


def print_mm_line(**shape):
    print(mm_line(**shape), flush=True)
