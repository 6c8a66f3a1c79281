"""Per-layer convolution timing: fastzero's numba kernels against PyTorch, interleaved in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/conv_layers_vs_torch.py [--threads 1] [--dtype float32]

For each convolution of DeepConvNet and SimpleConvNet (batch 100) prints the
median forward and backward ms, GFLOP/s, and PyTorch's (forward, and
backward of input and weights). The systems alternate call by call.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

CLOCK = time.perf_counter

LAYERS = {  # name: (C, H, W, FN, F, pad)
    "simple.conv1": (1, 28, 28, 30, 5, 0),
    "deep.conv1": (1, 28, 28, 16, 3, 1),
    "deep.conv2": (16, 28, 28, 16, 3, 1),
    "deep.conv3": (16, 14, 14, 32, 3, 1),
    "deep.conv4": (32, 14, 14, 32, 3, 2),
    "deep.conv5": (32, 8, 8, 64, 3, 1),
    "deep.conv6": (64, 8, 8, 64, 3, 1),
}


def median_ms(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = CLOCK()
        fn()
        ts.append(CLOCK() - t0)
    return 1e3 * float(np.median(ts))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--old", action="store_true", help="also time the kernels without the vector tiles")
    p.add_argument("--cpu-time", action="store_true",
                   help="time by the calling thread's CPU time (1 thread on a shared machine)")
    args = p.parse_args()
    if args.cpu_time:
        global CLOCK
        CLOCK = time.thread_time
    import fastzero
    from fastzero.kernels.numba import conv as fz
    import threadpoolctl

    fastzero.set_num_threads(args.threads)
    torch = None
    if not args.no_torch:
        import torch
        torch.set_num_threads(args.threads)
    info = [(m["internal_api"], m.get("architecture"), m["version"]) for m in threadpoolctl.threadpool_info()]
    print("threadpools:", info)
    dt = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    print(f"{'layer':14s} {'fz fwd':>8s} {'fz bwd':>8s} {'GF/s f':>7s} {'GF/s b':>7s} | {'pt fwd':>8s} {'pt bwd':>8s}")
    tot = [0.0, 0.0, 0.0, 0.0]
    for name, (C, H, W, FN, F, pad) in LAYERS.items():
        N = args.batch
        x = rng.standard_normal((N, C, H, W)).astype(dt)
        Wt = (0.1 * rng.standard_normal((FN, C, F, F))).astype(dt)
        b = rng.standard_normal(FN).astype(dt)
        out, cache = fz.conv_forward(x, Wt, b, 1, pad)
        dout = rng.standard_normal(out.shape).astype(dt)
        flops = 2.0 * N * FN * C * F * F * out.shape[2] * out.shape[3]
        runs = {"fwd": lambda: fz.conv_forward(x, Wt, b, 1, pad), "bwd": lambda: fz.conv_backward(dout, cache, Wt, 1, pad)}
        if args.old:
            def old(f):
                def run():
                    saved, fz.VECTOR_MIN_TAPS = fz.VECTOR_MIN_TAPS, 1 << 30
                    try:
                        f()
                    finally:
                        fz.VECTOR_MIN_TAPS = saved
                return run
            runs["ofwd"], runs["obwd"] = old(runs["fwd"]), old(runs["bwd"])
        if torch is not None:
            tx = torch.from_numpy(x).requires_grad_(True)
            tw = torch.from_numpy(Wt).requires_grad_(True)
            tb = torch.from_numpy(b).requires_grad_(True)
            tdo = torch.from_numpy(dout)

            def pt_fwd():
                with torch.no_grad():
                    torch.nn.functional.conv2d(tx, tw, tb, padding=pad)

            def pt_bwd():
                y = torch.nn.functional.conv2d(tx, tw, tb, padding=pad)
                y.backward(tdo)
            # backward alone = (fwd+bwd) - fwd
            runs["ptf"], runs["ptfb"] = pt_fwd, pt_bwd
        for f in runs.values():
            f()
        res = {k: [] for k in runs}
        for _ in range(args.reps):
            for k, f in runs.items():
                res[k].append(median_ms(f, 1))
        m = {k: float(np.median(v)) for k, v in res.items()}
        ptb = m["ptfb"] - m["ptf"] if torch is not None else float("nan")
        ptf = m.get("ptf", float("nan"))
        tot = [tot[0] + m["fwd"], tot[1] + m["bwd"], tot[2] + ptf, tot[3] + ptb]
        print(f"{name:14s} {m['fwd']:8.2f} {m['bwd']:8.2f} {flops / m['fwd'] / 1e6:7.0f} {2 * flops / m['bwd'] / 1e6:7.0f} | "
              f"{ptf:8.2f} {ptb:8.2f}" + (f" | old {m['ofwd']:8.2f} {m['obwd']:8.2f}" if args.old else ""))
    print(f"{'total':14s} {tot[0]:8.2f} {tot[1]:8.2f} {'':7s} {'':7s} | {tot[2]:8.2f} {tot[3]:8.2f}")


if __name__ == "__main__":
    main()
