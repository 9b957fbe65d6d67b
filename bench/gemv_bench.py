#!/usr/bin/env python3
"""One-row matrix products on this CPU: which PyTorch kernel streams weights fastest.

Every Qwen3-TTS decode step is a chain of (1 x K) @ (K x N) products, so the read rate of the
weights sets the speed.  For each kernel this prints microseconds per product and the weight bytes
read per second, next to a plain read of a large tensor (the rate the floor in docs/benchmarks.md
uses).  Weights cycle through enough distinct matrices to spill the last-level cache.

    .venv/bin/python bench/gemv_bench.py [--threads 1] [--shapes 3072x1024,1024x3072]
"""

from __future__ import annotations

import argparse
import time
import warnings


def time_per_call(fn, operands, reps: int = 5, rounds: int = 4) -> float:
    for operand in operands[:3]:
        fn(operand)
    best = float("inf")
    for _ in range(reps):
        started = time.perf_counter()
        for _ in range(rounds):
            for operand in operands:
                fn(operand)
        best = min(best, (time.perf_counter() - started) / (rounds * len(operands)))
    return best


def kernels(torch, n: int, k: int, count: int):
    """(name, bytes per weight, call, operands) for each kernel, on the same random weights."""
    import torch.nn.functional as F

    weights = [torch.randn(n, k) * 0.02 for _ in range(count)]
    x32 = torch.randn(1, k)
    x16 = x32.bfloat16()
    bf16 = [w.bfloat16() for w in weights]
    yield "float32 F.linear", 4, lambda w: F.linear(x32, w), weights
    yield "bfloat16 F.linear", 2, lambda w: F.linear(x16, w), bf16
    packed = [torch.ops.mkldnn._reorder_linear_weight(w, 1) for w in bf16]
    yield (
        "bfloat16 oneDNN packed",
        2,
        lambda w: torch.ops.mkldnn._linear_pointwise(x16, w, None, "none", [], ""),
        packed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dynamic = []
        for w in weights:
            linear = torch.nn.Linear(k, n, bias=False)
            linear.weight.data = w
            dynamic.append(
                torch.ao.quantization.quantize_dynamic(
                    torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.qint8
                )[0]
            )
    yield "int8 dynamic (fbgemm)", 1, lambda m: m(x32), dynamic
    int8 = []
    for w in weights:
        scale = w.abs().amax(1) / 127
        int8.append((torch.round(w / scale[:, None]).clamp(-128, 127).to(torch.int8), scale.bfloat16()))
    yield "int8 weight-only, bf16 act", 1, lambda q: torch.ops.aten._weight_int8pack_mm(x16, q[0], q[1]), int8


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--shapes",
        default="1024x1024,2048x1024,3072x1024,1024x3072",
        help="NxK list (out x in); the defaults are the 0.6B talker/predictor projections",
    )
    parser.add_argument("--spill-mb", type=int, default=96, help="weights per kernel, beyond the L3 cache")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    data = torch.ones((512 << 20) // 4)
    read_s = time_per_call(lambda t: t.sum(), [data], reps=7, rounds=1)
    print(f"{'plain read (sum of 512 MiB float32)':40} {data.numel() * 4 / read_s / 1e9:7.1f} GB/s")
    del data
    for shape in args.shapes.split(","):
        n, k = (int(v) for v in shape.lower().split("x"))
        count = max(4, (args.spill_mb << 20) // (n * k * 2))
        for name, width, call, operands in kernels(torch, n, k, count):
            seconds = time_per_call(call, operands)
            print(
                f"{shape:>10} {name:29} {seconds * 1e6:8.1f} us {n * k * width / seconds / 1e9:7.1f} GB/s",
                flush=True,
            )


if __name__ == "__main__":
    main()
