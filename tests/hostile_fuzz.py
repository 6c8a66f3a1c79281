"""Fuzzing of fastzero's file loaders, run in a child process by test_hostile_files.py.

``python hostile_fuzz.py DIR CASES SEED`` reads the valid files the test wrote
into DIR (``params.pkl``, ``params.npz``, ``checkpoint.npz``, ``images.gz``),
and loads CASES mutated copies of each (bytes flipped, overwritten with
random bytes, truncated, cut and spliced) with the matching loader. A loader
may accept a mutated file or refuse it with a ValueError; the child must never die
(a segfault or abort shows as a negative return code in the parent) and must
never allocate without bound (its address space is capped with RLIMIT_AS).
Prints one JSON line: loader -> {"accepted": n, "refused": n, "other exception": n,
"errors": {type: n}}.

``python hostile_fuzz.py pickles DIR CASES SEED`` writes CASES pickles built by
:func:`crafted_pickle` (the globals a numpy array pickle names, called and
``BUILD``-ed in random combinations with random arguments: object and
structured dtypes, raw buffers, bogus ``__setstate__`` tuples, lying shapes)
into DIR and reads each with ``params_io.read_params``. Prints one JSON line:
{"accepted": n, "refused": n, "errors": {type: n}, "bad": [...]}, where "bad"
lists refusals that are not a ValueError naming the file and accepted results
that are not a dict of names to numeric arrays.
"""
from __future__ import annotations

import json
import pickle
import resource
import struct
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
            except Exception as exc:  # a clean refusal is a ValueError (counted apart otherwise)
                outcome["refused" if isinstance(exc, ValueError) else "other exception"] += 1
                errors[type(exc).__name__] += 1
            else:
                outcome["accepted"] += 1
        report[name] = {**outcome, "errors": dict(errors)}
    print(json.dumps(report))


# ------------------------------------------------------------------ crafted pickles

# Every global that a restricted parameter unpickler might admit (numpy 1.x and 2.x
# module names), and a few it must refuse.
GLOBALS = [
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("collections", "OrderedDict"), ("__builtin__", "bytes"), ("builtins", "bytes"),
    ("builtins", "bytearray"), ("builtins", "getattr"), ("numpy", "frombuffer"),
]
DTYPE_CODES = ["f8", "f4", "f2", "i8", "i4", "u1", "b1", "O", "|O", "<f8", ">i4", "V8", "U4",
               "S8", "c16", "M8", "m8[s]", "f16", "x", ""]
STRINGS = DTYPE_CODES + ["latin1", "utf-8", "b", "C", "F", "K", "<", ">", "|", "=", "W1"]
INTS = [-(2**63), -1, 0, 1, 2, 3, 8, 63, 2**31 - 1, 2**40, 10**30]


def _int(v: int) -> bytes:
    if -(2**31) <= v < 2**31:
        return pickle.BININT + struct.pack("<i", v)
    encoded = pickle.encode_long(v)
    return pickle.LONG1 + bytes([len(encoded)]) + encoded


def _str(s: str) -> bytes:
    data = s.encode("utf-8")
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _bytes(b: bytes) -> bytes:
    return pickle.BINBYTES + struct.pack("<I", len(b)) + b


def _bytearray(b: bytes) -> bytes:
    return pickle.BYTEARRAY8 + struct.pack("<Q", len(b)) + b


def _global(module: str, name: str, proto: int) -> bytes:
    if proto < 4:
        return pickle.GLOBAL + f"{module}\n{name}\n".encode()
    return _str(module) + _str(name) + pickle.STACK_GLOBAL


def _tuple(items) -> bytes:
    return pickle.MARK + b"".join(items) + pickle.TUPLE


def _call(func: bytes, args) -> bytes:
    return func + _tuple(args) + pickle.REDUCE


def _build(obj: bytes, state: bytes) -> bytes:
    return obj + state + pickle.BUILD


def _dict(pairs) -> bytes:
    return pickle.EMPTY_DICT + pickle.MARK + b"".join(k + v for k, v in pairs) + pickle.SETITEMS


class _Crafter:
    """Random pickle fragments, each pushing one object onto the unpickler's stack."""

    def __init__(self, rng: np.random.Generator, proto: int):
        self.rng, self.proto = rng, proto

    def pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    def glob(self, name=None) -> bytes:
        module, name = self.pick([g for g in GLOBALS if name is None or g[1] == name])
        return _global(module, name, self.proto)

    def raw(self) -> bytes:
        kind = int(self.rng.integers(4))
        if kind == 0:
            return b"A" * 8 * int(self.rng.integers(0, 4))
        if kind == 1:
            return b"b"
        return self.rng.integers(0, 256, int(self.rng.integers(0, 65)), dtype=np.uint8).tobytes()

    def shape(self) -> bytes:
        return _tuple(_int(self.pick([0, 1, 2, 3, 8, -1, 2**31 - 1, 2**40]))
                      for _ in range(int(self.rng.integers(0, 4))))

    def dtype(self) -> bytes:
        """numpy.dtype(code, align, copy), usually followed by BUILD with a (bogus) state."""
        code = _str(self.pick(DTYPE_CODES))
        node = _call(self.glob("dtype"), [code, self.value(1) if self.rng.random() < 0.2 else pickle.NEWFALSE,
                                          pickle.NEWTRUE])
        if self.rng.random() < 0.8:
            fields = [_int(3), _str(self.pick(["<", ">", "|", "="])), pickle.NONE, pickle.NONE,
                      pickle.NONE, _int(-1), _int(-1), _int(0)]
            if self.rng.random() < 0.5:  # perturb one field
                fields[int(self.rng.integers(len(fields)))] = self.value(1)
            if self.rng.random() < 0.1:
                fields = fields[: int(self.rng.integers(len(fields)))]
            node = _build(node, _tuple(fields))
        return node

    def array(self) -> bytes:
        """An ndarray the way numpy pickles it, with one or more parts replaced."""
        data = self.pick([lambda: _bytes(self.raw()), lambda: _bytearray(self.raw()),
                          lambda: _str("AAAAAAAA"), lambda: self.value(1)])()
        kind = int(self.rng.integers(4))
        if kind == 0:  # _reconstruct(ndarray, (0,), b'b') then BUILD (version, shape, dtype, fortran, data)
            base = _call(self.glob("_reconstruct"), [self.glob("ndarray"), _tuple([_int(0)]), _bytes(b"b")])
            if self.rng.random() < 0.3:
                base = _call(self.glob("_reconstruct"), [self.value(1), self.shape(), self.value(1)])
            state = [_int(1), self.shape(), self.dtype(), self.pick([pickle.NEWFALSE, pickle.NEWTRUE]), data]
            if self.rng.random() < 0.3:
                state[int(self.rng.integers(len(state)))] = self.value(1)
            return _build(base, _tuple(state))
        if kind == 1:  # _frombuffer(buf, dtype, shape, order[, axis_order])
            args = [data, self.dtype(), self.shape(), _str(self.pick(["C", "F", "K", "A"]))]
            if self.rng.random() < 0.3:
                args.append(self.shape())
            return _call(self.glob("_frombuffer"), args)
        if kind == 2:  # ndarray(shape, dtype, buffer[, offset, strides]) called directly
            args = [self.shape(), self.dtype(), data]
            if self.rng.random() < 0.3:
                args += [_int(self.pick(INTS)), self.shape()]
            return _call(self.glob("ndarray"), args)
        return _call(self.glob("scalar"), [self.dtype(), data])  # a numpy scalar

    def value(self, depth: int) -> bytes:
        kinds = ["int", "str", "bytes", "const", "global"]
        if depth < 3:
            kinds += ["tuple", "dict", "call", "build", "dtype", "array", "array", "ordered"]
        kind = self.pick(kinds)
        if kind == "int":
            return _int(self.pick(INTS))
        if kind == "str":
            return _str(self.pick(STRINGS))
        if kind == "bytes":
            return self.pick([_bytes, _bytearray])(self.raw())
        if kind == "const":
            return self.pick([pickle.NONE, pickle.NEWTRUE, pickle.NEWFALSE, pickle.EMPTY_TUPLE])
        if kind == "global":
            return self.glob()
        if kind == "tuple":
            return _tuple(self.value(depth + 1) for _ in range(int(self.rng.integers(0, 6))))
        if kind == "dict":
            return self.params(depth + 1)
        if kind == "call":
            return _call(self.glob(), [self.value(depth + 1) for _ in range(int(self.rng.integers(0, 5)))])
        if kind == "build":
            return _build(self.value(depth + 1), self.value(depth + 1))
        if kind == "dtype":
            return self.dtype()
        if kind == "array":
            return self.array()
        # OrderedDict(x): iterates x, e.g. an object array over attacker bytes
        return _call(self.glob("OrderedDict"), [self.value(depth + 1)] if self.rng.random() < 0.8 else [])

    def params(self, depth: int) -> bytes:
        pairs = [(_str(self.pick(["W1", "b1", "W2", "b2"])),
                  self.array() if self.rng.random() < 0.7 else self.value(depth + 1))
                 for _ in range(int(self.rng.integers(0, 4)))]
        return _dict(pairs)


def crafted_pickle(rng: np.random.Generator) -> bytes:
    """One pickle (protocol 2-5 framing) of random calls to and builds of the array globals."""
    proto = int(rng.integers(2, 6))
    crafter = _Crafter(rng, proto)
    kind = int(rng.integers(3))
    body = crafter.params(0) if kind == 0 else crafter.value(0 if kind == 1 else 2)
    return pickle.PROTO + bytes([proto]) + body + pickle.STOP


def fuzz_pickles(directory: str, cases: int, seed: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    from fastzero import params_io

    rng = np.random.default_rng(seed)
    path = Path(directory) / "crafted.pkl"
    outcome: Counter = Counter()
    errors: Counter = Counter()
    bad = []
    for case in range(cases):
        data = crafted_pickle(rng)
        path.write_bytes(data)
        try:
            params = params_io.read_params(path)
        except Exception as exc:  # judged below: only a ValueError naming the file is right
            outcome["refused"] += 1
            errors[type(exc).__name__] += 1
            if not isinstance(exc, ValueError) or str(path) not in str(exc):
                bad.append(f"case {case}: {type(exc).__name__}: {exc}"[:300])
        else:
            outcome["accepted"] += 1
            if not (isinstance(params, dict) and all(
                    isinstance(k, str) and isinstance(v, np.ndarray) and v.dtype.kind in "biuf"
                    for k, v in params.items())):
                bad.append(f"case {case}: accepted {params!r}"[:300])
    print(json.dumps({**outcome, "errors": dict(errors), "bad": bad[:20]}))


if __name__ == "__main__":
    if sys.argv[1] == "pickles":
        fuzz_pickles(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
