"""What a search runs: its settings, its trials, the rungs of successive halving.

Everything here is decided by the settings alone (no Dask, no clock), so a
resumed search makes the same decisions as the one it continues.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from fastzero.search.space import BOOK_SPACE, Range, sample, trial_seed
from fastzero.search.trial import NETS, SearchData, TrialConfig, final_accuracy, split_validation

__all__ = ["SearchSettings", "rungs", "rung_sizes", "promote", "load_search_data"]


@dataclass(frozen=True)
class SearchSettings:
    """A whole search. The defaults are the book's experiment (chapter 6):
    100 trials of 50 epochs, lr and weight decay log-uniform, MultiLayerNet
    (six hidden layers of 100) with SGD on the first 500 MNIST training
    samples, 20 % of them held out for validation.

    ``halving``: successive halving, rungs of ``min_epochs * eta**k`` epochs
    (then ``epochs``), each rung keeping the best ``1/eta`` of the one before.
    """

    trials: int = 100
    epochs: int = 50
    seed: int = 0
    space: tuple[Range, ...] = BOOK_SPACE
    config: TrialConfig = field(default_factory=TrialConfig)
    train_size: int = 500
    val_rate: float = 0.2
    halving: bool = False
    eta: int = 3
    min_epochs: int = 1

    def __post_init__(self) -> None:
        if self.trials < 1 or self.epochs < 1 or self.min_epochs < 1 or self.eta < 2:
            raise ValueError("need trials >= 1, epochs >= 1, min_epochs >= 1 and eta >= 2")
        allowed = NETS[self.config.net]
        extra = [r.name for r in self.space if r.name not in allowed]
        if extra:
            raise ValueError(f"network {self.config.net!r} takes no {', '.join(extra)} "
                             f"(it takes {', '.join(allowed)})")

    def params(self, trial: int) -> dict[str, Any]:
        return sample(self.space, self.seed, trial)

    def trial_seed(self, trial: int) -> int:
        return trial_seed(self.seed, trial)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trials": self.trials, "epochs": self.epochs, "seed": self.seed,
            "space": [r.spec() for r in self.space], "config": self.config.as_dict(),
            "train_size": self.train_size, "val_rate": self.val_rate,
            "halving": self.halving, "eta": self.eta, "min_epochs": self.min_epochs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SearchSettings":
        from fastzero.search.space import space_from_specs

        data = dict(data)
        data["space"] = space_from_specs(data["space"])
        data["config"] = TrialConfig(**data["config"])
        return cls(**data)

    def with_trials(self, trials: int) -> "SearchSettings":
        return replace(self, trials=trials)


def rungs(settings: SearchSettings) -> list[int]:
    """Epochs of each rung: ``min_epochs * eta**k`` below ``epochs``, then ``epochs``
    (``[epochs]`` without halving)."""
    if not settings.halving:
        return [settings.epochs]
    out, e = [], settings.min_epochs
    while e < settings.epochs:
        out.append(e)
        e *= settings.eta
    return out + [settings.epochs]


def rung_sizes(settings: SearchSettings) -> list[int]:
    """Trials trained at each rung: all, then ``max(1, n // eta)`` of the rung before."""
    sizes = [settings.trials]
    for _ in rungs(settings)[1:]:
        sizes.append(max(1, sizes[-1] // settings.eta))
    return sizes


def promote(records: Iterable[dict[str, Any]], keep: int) -> list[int]:
    """The ``keep`` best trials of a rung by validation accuracy (ties: lower index);
    diverged trials are never promoted."""
    ranked = sorted((r for r in records if r["status"] == "ok"),
                    key=lambda r: (-final_accuracy(r), r["trial"]))
    return sorted(r["trial"] for r in ranked[:keep])


def load_search_data(settings: SearchSettings, data_dir: str | None = None) -> SearchData:
    """The first ``train_size`` MNIST training samples, split as the book does."""
    import numpy as np

    from fastzero.datasets import load_mnist

    (x, t), _ = load_mnist(normalize=True, flatten=settings.config.flat_input, data_dir=data_dir)
    if settings.train_size > len(x):
        raise ValueError(f"train_size {settings.train_size} exceeds the {len(x)} training samples")
    return split_validation(x[:settings.train_size], t[:settings.train_size], settings.val_rate,
                            settings.seed, np.dtype(settings.config.dtype))


def best_so_far(records: Iterable[dict[str, Any]]) -> float:
    """The best final validation accuracy among finished records (-inf if none)."""
    return max((final_accuracy(r) for r in records), default=-math.inf)
