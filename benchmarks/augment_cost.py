"""What data augmentation adds to a training step: each preset on a batch of 100 MNIST-sized
images against one SimpleConvNet and one DeepConvNet step (gradient + Adam), float32.

    python benchmarks/augment_cost.py [--threads 1] [--rounds 41] [--parts]
    python benchmarks/augment_cost.py --trainer [--threads 1] [--steps 400] [--net SimpleConvNet]

Everything is interleaved round by round in one process; at 1 thread the clock is the
calling thread's CPU time (steady on a shared machine), otherwise wall time. Prints
medians and the augmentation's cost as a percentage of each step; ``--parts`` also times
the pieces of the elastic preset (the random draws, the warp with and without the field).
``--trainer`` times whole ``Trainer.train_step`` calls instead (batch sampling, the
augmentation, gradient, update), one trainer per preset and one without, step by step in
turn: what a preset adds to a step of the training loop.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

BATCH = 100


def measure(rounds: int = 41, threads: int = 1, dtype: str = "float32",
            parts: bool = False, deep: bool = True) -> dict[str, float]:
    """Median seconds of each step and augmentation (and the elastic pieces with
    ``parts``; without DeepConvNet unless ``deep``), interleaved over ``rounds`` rounds."""
    import fastzero
    from fastzero import _backend
    from fastzero.augment import PRESETS, gaussian_taps
    from fastzero.nets import DeepConvNet, SimpleConvNet
    from fastzero.optimizer import Adam

    fastzero.set_backend("numba")
    fastzero.set_num_threads(threads)
    clock = time.thread_time if threads == 1 else time.perf_counter
    dt = np.dtype(dtype)
    data = np.random.default_rng(0)
    x = data.random((BATCH, 1, 28, 28), dtype=dt)
    t = data.integers(0, 10, BATCH)
    rng = np.random.default_rng(1)
    jobs = {}
    nets = [("SimpleConvNet step", SimpleConvNet(dtype=dt, seed=0))]
    if deep:
        nets.append(("DeepConvNet step", DeepConvNet(dtype=dt, seed=0)))
    for name, net in nets:
        optimizer = Adam()
        jobs[name] = (lambda net=net, optimizer=optimizer:
                      optimizer.update(net.params, net.gradient(x, t)))
    for name, augment in PRESETS.items():
        jobs[f"augment {name}"] = lambda augment=augment: augment(x, rng)
    if parts:
        k = _backend.kernels()
        elastic = PRESETS["elastic"]
        taps = gaussian_taps(elastic.elastic_sigma, dt)
        grid, key = elastic.draw(x.shape, dt, rng)
        alpha = elastic.elastic_alpha
        jobs["  elastic: draw (grid, key)"] = lambda: elastic.draw(x.shape, dt, rng)
        jobs["  elastic: warp (noise, blur, resample)"] = lambda: k.warp(x, grid, key, alpha, taps)
        jobs["  affine: warp"] = lambda: k.warp(x, grid, None, 0.0, None)
    for job in jobs.values():  # compile, warm caches
        job()
    times = {name: [] for name in jobs}
    for _ in range(rounds):
        for name, job in jobs.items():
            start = clock()
            job()
            times[name].append(clock() - start)
    return {name: statistics.median(v) for name, v in times.items()}


def measure_in_trainer(steps: int = 400, threads: int = 1,
                       net: str = "SimpleConvNet") -> dict[str, float]:
    """Median seconds of ``Trainer.train_step`` without augmentation and with each preset,
    float32, batch 100, random images (the cost does not depend on them), the trainers
    stepped in turn."""
    import fastzero
    from fastzero import nets
    from fastzero.augment import PRESETS
    from fastzero.trainer import Trainer

    fastzero.set_backend("numba")
    fastzero.set_num_threads(threads)
    clock = time.thread_time if threads == 1 else time.perf_counter
    data = np.random.default_rng(0)
    x = data.random((60 * BATCH, 1, 28, 28), dtype=np.float32)
    t = data.integers(0, 10, len(x))
    trainers = {name: Trainer(getattr(nets, net)(dtype=np.float32, seed=0), x, t, x[:BATCH],
                              t[:BATCH], epochs=steps, mini_batch_size=BATCH, optimizer="Adam",
                              verbose=False, seed=1, augment=preset)
                for name, preset in [("no augmentation", None), *((p, p) for p in PRESETS)]}
    for trainer in trainers.values():  # compile, warm caches
        for _ in range(3):
            trainer.train_step()
    times = {name: [] for name in trainers}
    for _ in range(steps):
        for name, trainer in trainers.items():
            start = clock()
            trainer.train_step()
            times[name].append(clock() - start)
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=41)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--parts", action="store_true")
    p.add_argument("--trainer", action="store_true")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--net", default="SimpleConvNet")
    args = p.parse_args()
    kind = "calling-thread CPU" if args.threads == 1 else "wall"
    if args.trainer:
        median = measure_in_trainer(args.steps, args.threads, args.net)
        base = median["no augmentation"]
        print(f"{args.net} float32, batch {BATCH}, {args.threads} thread(s), {kind} ms per "
              f"Trainer.train_step, median of {args.steps} steps:")
        for name, seconds in median.items():
            print(f"  {name:16s} {1e3 * seconds:8.3f}  {100 * (seconds / base - 1):+5.1f} %")
        return
    median = measure(args.rounds, args.threads, args.dtype, args.parts)
    print(f"{args.dtype}, batch {BATCH}, {args.threads} thread(s), {kind} ms, median of "
          f"{args.rounds} interleaved rounds:")
    steps = [name for name in median if name.endswith("step")]
    for name, seconds in median.items():
        share = ""
        if name.startswith("augment"):
            share = "  " + ", ".join(f"{100 * seconds / median[s]:.1f} % of {s.split()[0]}"
                                     for s in steps)
        print(f"  {name:32s} {1e3 * seconds:8.3f}{share}")


if __name__ == "__main__":
    main()
