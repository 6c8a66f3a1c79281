"""The search space: named hyper-parameters drawn from log, linear or integer ranges.

A trial's values depend only on ``(search seed, trial index)``, never on the
order in which trials run or on the worker that runs them.

The command line spells a range ``NAME=LOW:HIGH[:SCALE]`` with SCALE ``log``
(the default: ``10 ** uniform(log10 LOW, log10 HIGH)``, as the book draws its
learning rate and weight decay), ``linear``, ``int`` or ``logint`` (integers,
uniform or log-uniform); ``NAME=VALUE`` fixes a value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

__all__ = ["PARAMS", "SCALES", "BOOK_SPACE", "Range", "parse_range", "space_from_specs", "sample",
           "trial_seed"]

#: The hyper-parameters a trial understands, with what they set.
PARAMS: dict[str, str] = {
    "lr": "the optimizer's learning rate",
    "weight_decay": "L2 weight decay lambda (multi_layer networks)",
    "batch_size": "mini-batch size",
    "hidden_size": "neurons per hidden layer (two_layer, multi_layer, simple)",
    "dropout": "dropout ratio after every hidden layer (multi_layer networks; 0 = none)",
}
_INTEGER = {"batch_size", "hidden_size"}
SCALES = ("log", "linear", "int", "logint")


@dataclass(frozen=True)
class Range:
    """One hyper-parameter: ``low == high`` fixes it."""

    name: str
    low: float
    high: float
    scale: str = "log"

    def __post_init__(self) -> None:
        if self.name not in PARAMS:
            raise ValueError(f"unknown hyper-parameter {self.name!r}; choose from {', '.join(PARAMS)}")
        if self.scale not in SCALES:
            raise ValueError(f"{self.name}: unknown scale {self.scale!r}; choose from {', '.join(SCALES)}")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ValueError(f"{self.name}: need finite LOW <= HIGH, got {self.low}:{self.high}")
        if self.scale in ("log", "logint") and self.low <= 0:
            raise ValueError(f"{self.name}: a log range needs LOW > 0, got {self.low}")
        if self.name in _INTEGER and self.scale not in ("int", "logint") and self.low != self.high:
            raise ValueError(f"{self.name} is an integer: use the scale int or logint")

    def draw(self, rng: np.random.Generator) -> float | int:
        """One value (always one draw from ``rng``, so the next range's draw does not move)."""
        u = rng.random()
        if self.scale in ("log", "logint"):
            value = 10 ** (math.log10(self.low) + u * (math.log10(self.high) - math.log10(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        if self.scale in ("int", "logint") or self.name in _INTEGER:
            return int(min(max(round(value), math.ceil(self.low)), math.floor(self.high)))
        return float(value)

    def spec(self) -> str:
        """The command-line spelling."""
        return f"{self.name}={self.low:g}:{self.high:g}:{self.scale}"


#: ``ch06/hyperparameter_optimization.py``: ``10 ** uniform(-6, -2)`` and ``10 ** uniform(-8, -4)``.
BOOK_SPACE: tuple[Range, ...] = (
    Range("weight_decay", 1e-8, 1e-4, "log"),
    Range("lr", 1e-6, 1e-2, "log"),
)


def parse_range(text: str) -> Range:
    """``NAME=LOW:HIGH[:SCALE]`` or ``NAME=VALUE`` -> :class:`Range`."""
    name, sep, rest = text.partition("=")
    parts = rest.split(":")
    if not sep or not 1 <= len(parts) <= 3:
        raise ValueError(f"hyper-parameter {text!r}: expected NAME=LOW:HIGH[:SCALE] or NAME=VALUE")
    try:
        low = float(parts[0])
        high = float(parts[1]) if len(parts) > 1 else low
    except ValueError:
        raise ValueError(f"hyper-parameter {text!r}: LOW and HIGH must be numbers") from None
    name = name.strip()
    scale = parts[2] if len(parts) == 3 else ("logint" if name in _INTEGER else "log")
    if len(parts) == 1:
        scale = "int" if name in _INTEGER else "linear"
    return Range(name, low, high, scale)


def trial_seed(seed: int, trial: int) -> int:
    """The training seed of trial ``trial`` of a search seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, trial, 1]).generate_state(1)[0])


def sample(space: Iterable[Range], seed: int, trial: int) -> dict[str, float | int]:
    """The hyper-parameters of trial ``trial``: ranges drawn in the order given."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, trial, 0]))
    return {r.name: r.draw(rng) for r in space}


def space_from_specs(specs: Iterable[str]) -> tuple[Range, ...]:
    """Ranges from their spellings; a later spelling of a name replaces an earlier one."""
    ranges: dict[str, Range] = {}
    for text in specs:
        r = parse_range(text)
        ranges[r.name] = r
    return tuple(ranges.values())
