"""Where a fastzero training step spends its time: forward and backward ms of every layer (median).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/step_layers.py [--net DeepConvNet] [--dtype float32]
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

CLOCK = time.perf_counter


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--net", default="DeepConvNet")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--cpu-time", action="store_true",
                   help="time by the calling thread's CPU time (1 thread on a shared machine)")
    p.add_argument("--no-vector", action="store_true",
                   help="convolutions without the vector tiles (BLAS and loops), for comparison")
    args = p.parse_args()
    if args.no_vector:
        from fastzero.kernels.numba import conv

        conv.VECTOR_MIN_TAPS = 1 << 62
    if args.cpu_time:
        global CLOCK
        CLOCK = time.thread_time
    import fastzero
    import fastzero.nets

    fastzero.set_backend("numba")
    fastzero.set_num_threads(args.threads)
    dt = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    x = rng.random((100, 1, 28, 28)).astype(dt)
    t = rng.integers(0, 10, 100)
    net = getattr(fastzero.nets, args.net)(dtype=dt, seed=0)
    layers = list(net.layers.values()) if isinstance(net.layers, dict) else list(net.layers)
    times = defaultdict(list)
    for rep in range(args.reps + 1):
        h = x
        for i, layer in enumerate(layers):
            t0 = CLOCK()
            h = layer.forward(h, train_flg=True) if "Dropout" in type(layer).__name__ else layer.forward(h)
            times[(i, "f")].append(CLOCK() - t0)
        net.last_layer.forward(h, t)
        d = net.last_layer.backward(1)
        for i in reversed(range(len(layers))):
            t0 = CLOCK()
            d = layers[i].backward(d)
            times[(i, "b")].append(CLOCK() - t0)
    tf = tb = 0.0
    for i, layer in enumerate(layers):
        f, b = (1e3 * float(np.median(times[(i, k)][1:])) for k in "fb")
        tf, tb = tf + f, tb + b
        print(f"{i:2d} {type(layer).__name__:14s} fwd {f:7.2f}  bwd {b:7.2f} ms")
    print(f"   {'total':14s} fwd {tf:7.2f}  bwd {tb:7.2f} ms")


if __name__ == "__main__":
    main()
