"""Data augmentation on the fly: random shifts, rotations, scaling and elastic
distortions of image batches, computed by the active backend's kernels.

Every image of a batch gets its own random transform. For an output pixel
``p`` (relative to the image centre ``c``) the source point is

    q = R(-angle) (p - shift) / zoom + c + alpha * smooth(noise)(p)

read by bilinear interpolation, zero outside the image. ``smooth(noise)`` is
the elastic distortion of Simard, Steinkraus and Platt (2003): a displacement
field of uniform noise in (-1, 1) per pixel and axis, smoothed by a Gaussian
of standard deviation ``sigma`` (cut at two ``sigma``, :func:`gaussian_taps`)
and scaled by ``alpha`` pixels.

All random numbers come from the ``numpy.random.Generator`` passed in: the
transforms' parameters directly, the elastic noise from one 64-bit key drawn
from it, which the kernel expands with SplitMix64, a counter per 8 noise
values (256 levels each: the blur averages a couple of hundred of them into a
displacement, so finer levels would change nothing). Every sample's noise is
then computed in parallel, and a seeded generator gives the same batches on
both backends and any thread count.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fastzero import _backend

__all__ = ["Augment", "PRESETS", "gaussian_taps"]


@dataclass(frozen=True)
class Augment:
    """Random transforms of image batches ``(N, C, H, W)``.

    Parameters
    ----------
    shift : largest shift, in pixels, along each axis (uniform in [-shift, shift]).
    rotation : largest rotation, in degrees (uniform in [-rotation, rotation]).
    scale : largest relative zoom (uniform in [1 - scale, 1 + scale]).
    elastic_alpha : strength of the elastic distortion, in pixels (0: none).
    elastic_sigma : smoothness of the elastic distortion (Gaussian std, pixels).
    """

    shift: float = 0.0
    rotation: float = 0.0
    scale: float = 0.0
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0

    def __post_init__(self) -> None:
        for name in ("shift", "rotation", "scale", "elastic_alpha", "elastic_sigma"):
            value = getattr(self, name)
            if (not isinstance(value, (int, float)) or isinstance(value, bool)
                    or not math.isfinite(value) or value < 0):
                raise ValueError(f"Augment: {name} must be a finite number >= 0, got {value!r}")
        if self.scale >= 1:
            raise ValueError(f"Augment: scale must be < 1 (a zoom in [1 - scale, 1 + scale]), "
                             f"got {self.scale!r}")
        if self.elastic_alpha and not self.elastic_sigma:
            raise ValueError("Augment: elastic_sigma must be > 0 when elastic_alpha is set")

    @classmethod
    def preset(cls, name: str) -> Augment:
        """One of :data:`PRESETS` by name."""
        if name not in PRESETS:
            raise ValueError(f"Augment: unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return PRESETS[name]

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A transformed copy of ``x`` (N, C, H, W), float32 or float64, of x's dtype."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"Augment: rng must be a numpy.random.Generator, got {type(rng).__name__}")
        if not (isinstance(x, np.ndarray) and x.ndim == 4 and x.dtype in (np.float32, np.float64)):
            got = f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise ValueError(f"Augment: expected a float32 or float64 batch (N, C, H, W), got {got}")
        grid, key = self.draw(x.shape, x.dtype, rng)
        taps = None if key is None else gaussian_taps(self.elastic_sigma, x.dtype)
        return _backend.kernels().warp(np.ascontiguousarray(x), grid, key, self.elastic_alpha, taps)

    def draw(self, shape: tuple[int, ...], dtype: np.dtype,
             rng: np.random.Generator) -> tuple[np.ndarray, int | None]:
        """Random transforms for a batch of ``shape`` (N, C, H, W), in ``dtype``.

        Returns ``grid`` (N, 2, 3), the affine part: output pixel ``(i, j)`` reads
        the point ``grid[n] @ (i, j, 1)``; and ``key``, one raw 64-bit draw of
        ``rng`` from which the ``warp`` kernel computes the elastic noise of every
        sample (``fastzero.kernels.numpy.augment.elastic_noise``), or None
        without an elastic part.
        """
        n, _, h, w = shape
        draw = rng.uniform
        angle = np.deg2rad(draw(-self.rotation, self.rotation, n))
        zoom = draw(1 - self.scale, 1 + self.scale, n)
        shift = draw(-self.shift, self.shift, (2, n))
        cy, cx = (h - 1) / 2, (w - 1) / 2
        cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
        ty, tx = cy + shift[0], cx + shift[1]  # the output point the image centre moves to
        grid = np.empty((n, 2, 3))
        grid[:, 0] = np.stack([cos, -sin, cy - cos * ty + sin * tx], axis=1)
        grid[:, 1] = np.stack([sin, cos, cx - sin * ty - cos * tx], axis=1)
        key = int(rng.bit_generator.random_raw()) if self.elastic_alpha else None
        return grid.astype(dtype), key


def gaussian_taps(sigma: float, dtype: np.dtype = np.float64) -> np.ndarray:
    """A normalised Gaussian of standard deviation ``sigma``, ``2r+1`` taps, r = round(2 sigma).

    Cut at two standard deviations (95 % of the mass, the rest spread by the
    normalisation): the field stays as smooth, and the blur costs two thirds
    of a cut at three.
    """
    r = max(int(2 * sigma + 0.5), 1)
    t = np.arange(-r, r + 1) / sigma
    taps = np.exp(-0.5 * t * t)
    return (taps / taps.sum()).astype(dtype)


#: Named recipes for ``fastzero train --augment NAME`` and ``Trainer(augment=NAME)``.
PRESETS: dict[str, Augment] = {
    "shift": Augment(shift=2.0),
    "affine": Augment(shift=2.0, rotation=10.0, scale=0.1),
    "elastic": Augment(shift=1.0, rotation=5.0, scale=0.05, elastic_alpha=34.0, elastic_sigma=4.0),
}
