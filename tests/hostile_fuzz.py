"""Mutation fuzzing of fastzero's file loaders, run in a child process by test_hostile_files.py.

``python hostile_fuzz.py DIR CASES SEED`` reads the valid files the test wrote
into DIR (``params.pkl``, ``params.npz``, ``checkpoint.npz``, ``images.gz``),
and loads CASES mutated copies of each (bytes flipped, overwritten with
random bytes, truncated, cut and spliced) with the matching loader. A loader
may accept a mutated file or raise any Exception; the child must never die
(a segfault or abort shows as a negative return code in the parent) and must
never allocate without bound (its address space is capped with RLIMIT_AS).
Prints one JSON line: loader -> {"accepted": n, "refused": n, "errors": {type: n}}.
"""
from __future__ import annotations

import json
import resource
import sys
from collections import Counter
from pathlib import Path

import numpy as np


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random corruption of ``data``."""
    buf = bytearray(data)
    kind = rng.integers(5)
    if kind == 0:  # flip a few bits
        for i in rng.integers(0, len(buf), rng.integers(1, 8)):
            buf[i] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # overwrite a run with random bytes
        start = int(rng.integers(len(buf)))
        run = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        buf[start:start + len(run)] = run
    elif kind == 2:  # truncate
        del buf[int(rng.integers(len(buf))):]
    elif kind == 3:  # overwrite with big-endian integers that look like sizes/counts
        start = int(rng.integers(max(len(buf) - 4, 1)))
        buf[start:start + 4] = int(rng.choice([0, 1, 2**31 - 1, 2**32 - 1, 2**24])).to_bytes(4, "big")
    else:  # cut a piece out and splice it in elsewhere
        a, b = sorted(rng.integers(0, len(buf), 2))
        piece = bytes(buf[a:b])
        del buf[a:b]
        at = int(rng.integers(len(buf) + 1))
        buf[at:at] = piece
    return bytes(buf)


def main(directory: str, cases: int, seed: int) -> None:
    # 2 GiB of address space: a loader trusting a lying size field dies with
    # MemoryError instead of swapping the machine to death.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    import fastzero
    from fastzero import params_io
    from fastzero.datasets import mnist
    from fastzero.nets import TwoLayerNet
    from fastzero.trainer import Trainer

    fastzero.set_backend("numpy")
    root = Path(directory)
    x = np.zeros((10, 6))
    t = np.zeros(10, dtype=np.int64)

    def load_checkpoint(path):
        trainer = Trainer(TwoLayerNet(6, 5, 3, seed=0), x, t, x, t, epochs=1,
                          mini_batch_size=5, optimizer="Adam", verbose=False)
        trainer.load_checkpoint(path)

    loaders = {
        "params.pkl": lambda p: TwoLayerNet(6, 5, 3, seed=0).load_params(p),
        "params.npz": lambda p: params_io.read_params(p),
        "checkpoint.npz": load_checkpoint,
        "images.gz": lambda p: mnist.read_idx(p, 3),
    }
    rng = np.random.default_rng(seed)
    report = {}
    for name, load in loaders.items():
        original = (root / name).read_bytes()
        target = root / f"mutated-{name}"
        outcome: Counter = Counter()
        errors: Counter = Counter()
        for _ in range(cases):
            target.write_bytes(mutate(original, rng))
            try:
                load(target)
            except Exception as exc:  # any clean refusal is fine here
                outcome["refused"] += 1
                errors[type(exc).__name__] += 1
            else:
                outcome["accepted"] += 1
        report[name] = {**outcome, "errors": dict(errors)}
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
