"""Floating-point work of a network's layers, counted from their shapes.

Only the products count: a convolution's forward is ``2*N*OH*OW*FN*C*FH*FW``
operations, an affine layer's ``2*N*D*M``; each backward is twice its forward
(``dx`` and ``dW``), except the first layer's, which is its forward: a training
step computes no gradient of the images (``Network.gradient`` asks the first
layer for ``dW`` only, as PyTorch does). Activations, pooling, the loss and the
optimizer are element-wise work, a fraction of a percent of a convnet's step,
and count zero. A training step is forward + backward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastzero.kernels._geometry import output_size


@dataclass(frozen=True)
class LayerWork:
    """One layer of a network: its name, input shape and forward/backward operations."""

    name: str
    layer: Any
    input_shape: tuple[int, ...]
    forward: int
    backward: int


def layers_of(net: Any) -> list[tuple[str, Any]]:
    """``(name, layer)`` of a book network in forward order: the keys of an
    ``OrderedDict`` of layers, or ``Conv1, Relu1, Conv2 ...`` for a list."""
    if isinstance(net.layers, dict):
        return list(net.layers.items())
    counts: dict[str, int] = {}
    named = []
    for layer in net.layers:
        kind = type(layer).__name__.replace("Convolution", "Conv").replace("Pooling", "Pool")
        counts[kind] = counts.get(kind, 0) + 1
        named.append((f"{kind}{counts[kind]}", layer))
    return named


def network_work(net: Any, batch: int) -> list[LayerWork]:
    """Every layer of ``net`` with its input shape and operations at ``batch`` images."""
    shape: tuple[int, ...] = (batch, *net.input_dim) if net.input_dim else (batch, net.params["W1"].shape[0])
    work = []
    for index, (name, layer) in enumerate(layers_of(net)):
        kind = type(layer).__name__
        forward = 0
        if kind == "Convolution":
            fn, c, fh, fw = layer.W.shape
            out = (batch, fn, output_size(shape[2], fh, layer.stride, layer.pad),
                   output_size(shape[3], fw, layer.stride, layer.pad))
            forward = 2 * batch * out[2] * out[3] * fn * c * fh * fw
        elif kind == "Pooling":
            out = (*shape[:2], output_size(shape[2], layer.pool_h, layer.stride, layer.pad),
                   output_size(shape[3], layer.pool_w, layer.stride, layer.pad))
        elif kind == "Affine":
            d, m = layer.W.shape
            out = (batch, m)
            forward = 2 * batch * d * m
        else:
            out = shape
        work.append(LayerWork(name, layer, shape, forward, (2 if index else 1) * forward))
        shape = out
    return work


def step_flops(net: Any, batch: int) -> tuple[int, int]:
    """``(forward, forward + backward)`` operations of one training step at ``batch``."""
    work = network_work(net, batch)
    forward = sum(w.forward for w in work)
    return forward, forward + sum(w.backward for w in work)
