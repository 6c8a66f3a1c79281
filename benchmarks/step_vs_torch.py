"""One Adam training step of the book's ConvNets, fastzero (numba) against PyTorch, interleaved in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/step_vs_torch.py [--threads 1] [--reps 9]

Batch 100, MNIST-shaped random input; the PyTorch nets have the same layers
(DeepConvNet with its two dropouts). Prints median ms and the ratio.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

CLOCK = time.perf_counter


def torch_net(torch, name, dtype):
    nn = torch.nn
    if name == "SimpleConvNet":
        net = nn.Sequential(nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                            nn.Linear(30 * 12 * 12, 100), nn.ReLU(), nn.Linear(100, 10))
    else:
        layers, c = [], 1
        for i, (f, p) in enumerate([(16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1)]):
            layers += [nn.Conv2d(c, f, 3, padding=p), nn.ReLU()]
            if i % 2:
                layers.append(nn.MaxPool2d(2))
            c = f
        layers += [nn.Flatten(), nn.Linear(64 * 4 * 4, 50), nn.ReLU(), nn.Dropout(0.5), nn.Linear(50, 10),
                   nn.Dropout(0.5)]
        net = nn.Sequential(*layers)
    return net.to(dtype)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--nets", default="SimpleConvNet,DeepConvNet")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--only", choices=["fastzero", "torch"],
                   help="time one system (at 2+ threads run each in its own process, alternating)")
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
    import threadpoolctl
    import torch

    import fastzero
    import fastzero.nets
    from fastzero.optimizer import Adam

    fastzero.set_backend("numba")
    fastzero.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    print("BLAS:", [(m["internal_api"], m.get("architecture"), m["version"]) for m in threadpoolctl.threadpool_info()])
    rng = np.random.default_rng(0)
    for name in args.nets.split(","):
        for dts in args.dtypes.split(","):
            dt = np.dtype(dts)
            x = rng.random((100, 1, 28, 28)).astype(dt)
            t = rng.integers(0, 10, 100)
            net, opt = getattr(fastzero.nets, name)(dtype=dt, seed=0), Adam()
            tnet = torch_net(torch, name, getattr(torch, dts))
            topt = torch.optim.Adam(tnet.parameters(), lr=0.001)
            tx, tt = torch.from_numpy(x), torch.from_numpy(t)

            def fz():
                opt.update(net.params, net.gradient(x, t))

            def pt():
                topt.zero_grad()
                torch.nn.functional.cross_entropy(tnet(tx), tt).backward()
                topt.step()
            systems = [("fz", fz), ("pt", pt)]
            if args.only:
                systems = [systems[args.only == "torch"]]
            for _, f in systems + systems:
                f()
            ts = {"fz": [], "pt": []}
            for _ in range(args.reps):
                for k, f in systems:
                    t0 = CLOCK()
                    f()
                    ts[k].append(CLOCK() - t0)
            a, b = (1e3 * float(np.median(ts[k])) if ts[k] else float("nan") for k in ("fz", "pt"))
            print(f"{name:14s} {dts:8s} fastzero {a:7.2f} ms  PyTorch {b:7.2f} ms  PyTorch/fastzero {b / a:5.2f}")


if __name__ == "__main__":
    main()
