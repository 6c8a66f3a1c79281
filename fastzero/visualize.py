"""What a network sees: first-layer filters, misclassified digits and Grad-CAM.

:func:`grad_cam` is plain NumPy over the network's layers and needs nothing
else; the ``*_figure`` functions draw with matplotlib (``pip install
"fastzero[plot]"``) and return the figure.

Grad-CAM (Selvaraju et al. 2017): for a convolution layer's output ``A``
(N, K, h, w) and a class score ``y_c`` (the raw logit, network in inference
mode), the channel weights are the spatial means of ``d y_c / d A``; the map
is ``ReLU(sum_k weight_k * A_k)``, resized to the input's height and width by
bilinear interpolation (pixel centres aligned, edges clamped). The layer may
sit inside a residual block: the gradient then flows through the block's own
``backward``, its batch norms and dropouts differentiated in inference mode.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from fastzero import _backend, blocks
from fastzero.blocks import Block
from fastzero.layers import BatchNormalization, Convolution, Dropout, SpatialBatchNormalization

__all__ = ["filters_figure", "grad_cam", "grad_cam_figure", "misclassified", "misclassified_figure"]


def _layers(network: Any) -> list[tuple[str, Any]]:
    """The network's top-level layers as ``(name, layer)`` in order."""
    layers = network.layers
    if isinstance(layers, dict):
        return list(layers.items())
    return [(f"{type(layer).__name__}{i}", layer) for i, layer in enumerate(layers)]


def _locate(layers: list[tuple[str, Any]], layer: int | str | None) -> tuple[int, list[str]]:
    """The top-level index holding the chosen layer and the path of child names from
    there to it (empty for a top-level layer)."""
    if layer is None:
        chosen = [i for i, (_, obj) in enumerate(layers) if isinstance(obj, (Convolution, Block))]
        if not chosen:
            raise ValueError("grad_cam: the network has no Convolution layer")
        return chosen[-1], []
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if not -len(layers) <= layer < len(layers):
            raise ValueError(f"grad_cam: layer index {layer} out of range for {len(layers)} layers")
        return int(layer) % len(layers), []
    if not isinstance(layer, str):
        raise TypeError(f"grad_cam: layer must be a name, an index or None, got {layer!r}")
    top, *path = layer.split(".")
    names = [name for name, _ in layers]
    if top not in names:
        raise ValueError(f"grad_cam: no layer named {layer!r}; layers: {', '.join(names)}")
    index = names.index(top)
    obj = layers[index][1]
    for depth, child in enumerate(path):
        children = obj.children if isinstance(obj, Block) else {}
        if child not in children:
            inside = ".".join([top, *path[:depth]])
            raise ValueError(f"grad_cam: no layer named {layer!r}; layers of {inside}: "
                             f"{', '.join(children) or 'none'}")
        obj = children[child]
    return index, path


def _label(layers: list[tuple[str, Any]], index: int, path: list[str]) -> str:
    return ".".join([layers[index][0], *path])


class _Tap:
    """Stands in for a block's child: keeps its output and the gradient that reaches it."""

    takes_train_flg = True

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.output = self.dout = None

    def forward(self, x: Any, train_flg: bool = False) -> np.ndarray:
        self.output = blocks.forward(self.layer, x, train_flg)
        return self.output

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dout = dout
        return _inference_backward(self.layer, dout)


class _InferenceBackward:
    """Stands in for a block's child during a backward pass after an inference forward."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return _inference_backward(self.layer, dout)


@contextmanager
def _children_replaced(block: Block, replace: dict[str, Any]) -> Iterator[None]:
    """``block.children`` with some entries replaced, restored (in order) afterwards."""
    saved = list(block.children.items())
    block.children.update(replace)
    try:
        yield
    finally:
        block.children.clear()
        block.children.update(saved)


@contextmanager
def _tapped(top: Any, path: list[str]) -> Iterator[_Tap | None]:
    """A :class:`_Tap` in place of the child ``path`` of ``top`` (None: nothing to tap)."""
    if not path:
        yield None
        return
    parent = top
    for child in path[:-1]:
        parent = parent.children[child]
    tap = _Tap(parent.children[path[-1]])
    with _children_replaced(parent, {path[-1]: tap}):
        yield tap


def _inference_backward(layer: Any, dout: np.ndarray) -> np.ndarray:
    """``dout`` through ``layer`` as it was run in inference mode."""
    if isinstance(layer, Dropout):  # inference output is x * (1 - ratio)
        return dout * dout.dtype.type(1 - layer.dropout_ratio)
    if isinstance(layer, BatchNormalization):  # inference: (x - mean) / std * gamma + beta
        scale = (layer.gamma / np.sqrt(layer.running_var + layer.eps)).astype(dout.dtype)
        if isinstance(layer, SpatialBatchNormalization):  # per channel of (N, C, H, W)
            return dout * scale[None, :, None, None]
        return (dout.reshape(len(dout), -1) * scale).reshape(dout.shape)
    if isinstance(layer, Block):  # its own backward, its mode-dependent children in inference mode
        modal = {name: _InferenceBackward(child) for name, child in layer.children.items()
                 if isinstance(child, (Dropout, BatchNormalization, Block))}
        with _children_replaced(layer, modal):
            return layer.backward(dout)
    return layer.backward(dout)


def grad_cam(network: Any, x: np.ndarray, target: int | Sequence[int] | np.ndarray | None = None,
             layer: int | str | None = None) -> np.ndarray:
    """Grad-CAM maps (N, H, W) of the images ``x`` (N, C, H, W), one per image, >= 0.

    Parameters
    ----------
    network : a convolutional network with ``layers`` (e.g. SimpleConvNet, DeepConvNet, ResNet).
    x : images (N, C, H, W).
    target : the class whose score is explained: one for all images, one per
        image, or None for each image's predicted class.
    layer : the layer whose output is looked at: by name (``"Conv1"``, a
        block ``"block2_1"``, or a layer inside a block ``"block2_1.conv1"``),
        by index in ``network.layers``, or None for the last convolution or
        block of ``network.layers``. Any layer with a 4-D output works.

    The maps are not rescaled for display: their values are in the units of
    the class score.
    """
    layers = _layers(network)
    index, path = _locate(layers, layer)
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"grad_cam: expected images (N, C, H, W), got shape {x.shape}")
    out = x.astype(network.dtype) if hasattr(network, "dtype") else x
    with _tapped(layers[index][1], path) as tap:
        activation = None
        for i, (_, obj) in enumerate(layers):
            out = blocks.forward(obj, out, False)
            if i == index:
                activation = out if tap is None else tap.output
        if activation.ndim != 4:
            raise ValueError(f"grad_cam: layer {_label(layers, index, path)} gives shape "
                             f"{activation.shape}, not a (N, K, h, w) feature map")
        scores = out
        n, classes = scores.shape
        if target is None:
            target = np.argmax(scores, axis=1)
        target = np.broadcast_to(np.asarray(target), (n,))
        if target.dtype.kind not in "iu" or target.min() < 0 or target.max() >= classes:
            raise ValueError(f"grad_cam: target must be class indices in [0, {classes}), "
                             f"got {target!r}")
        dout = np.zeros_like(scores)
        dout[np.arange(n), target] = 1
        for _, obj in reversed(layers[index + (tap is None):]):  # into the block holding the tap
            dout = _inference_backward(obj, dout)
        if tap is not None:
            dout = tap.dout
    weights = dout.mean(axis=(2, 3))
    cam = np.maximum(np.einsum("nk,nkhw->nhw", weights, activation), 0)
    return _resize(cam, x.shape[2:])


def _resize(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``maps`` (N, h, w) resized to ``size`` (H, W) bilinearly, pixel centres aligned,
    edges clamped (as OpenCV's ``resize`` and PyTorch's ``align_corners=False``)."""
    n, h, w = maps.shape
    big_h, big_w = size

    def source(count: int, small: int) -> np.ndarray:
        return np.clip((np.arange(count) + 0.5) * small / count - 0.5, 0, small - 1)

    src_y = np.broadcast_to(source(big_h, h)[:, None], (n, big_h, big_w)).astype(maps.dtype)
    src_x = np.broadcast_to(source(big_w, w)[None, :], (n, big_h, big_w)).astype(maps.dtype)
    kernels = _backend.kernels()
    return kernels.bilinear_sample(np.ascontiguousarray(maps[:, None]), np.ascontiguousarray(src_y),
                                   np.ascontiguousarray(src_x))[:, 0]


def misclassified(network: Any, x: np.ndarray, t: np.ndarray,
                  batch_size: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the samples ``network`` gets wrong and its predictions for them."""
    labels = np.asarray(t)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    predicted = np.concatenate([np.argmax(network.predict(x[i:i + batch_size]), axis=1)
                                for i in range(0, len(x), batch_size)])
    wrong = np.flatnonzero(predicted != labels)
    return wrong, predicted[wrong]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError('fastzero.visualize needs matplotlib: pip install "fastzero[plot]"') from exc
    return plt


def filters_figure(*weights: np.ndarray, titles: Sequence[str] = (), max_filters: int = 32):
    """One row of filter images per ``W`` (FN, C, FH, FW) given (channel 0 of each
    filter, grey scale, each filter scaled to its own range), as the book's
    ``ch07/visualize_filter.py`` draws them."""
    plt = _pyplot()
    count = min(max_filters, max(len(w) for w in weights))
    columns = min(count, 16)
    rows_per = -(-count // columns)
    fig, axes = plt.subplots(rows_per * len(weights), columns,
                             figsize=(columns * 0.7, rows_per * len(weights) * 0.8 + 0.4),
                             squeeze=False)
    for block, w in enumerate(weights):
        for i in range(rows_per * columns):
            ax = axes[block * rows_per + i // columns, i % columns]
            ax.set_axis_off()
            if i < min(count, len(w)):
                ax.imshow(w[i, 0], cmap="gray_r", interpolation="nearest")
        if block < len(titles):
            axes[block * rows_per, 0].set_title(titles[block], loc="left", fontsize=9,
                                                 x=0, ha="left")
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9, wspace=0.15, hspace=0.5)
    return fig


def misclassified_figure(network: Any, x: np.ndarray, t: np.ndarray, max_images: int = 20):
    """The first ``max_images`` misclassified images, each titled ``predicted (true)``,
    as the book's ``ch08/misclassified_mnist.py`` draws them."""
    plt = _pyplot()
    wrong, predicted = misclassified(network, x, t)
    labels = np.asarray(t).argmax(axis=1) if np.ndim(t) == 2 else np.asarray(t)
    shown = wrong[:max_images]
    columns = min(len(shown), 10) or 1
    rows = max(-(-len(shown) // columns), 1)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.0, rows * 1.2 + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i, p in zip(axes.flat, shown, predicted):
        ax.imshow(np.asarray(x[i]).reshape(28, 28) if np.size(x[i]) == 784 else x[i][0],
                  cmap="gray_r", interpolation="nearest")
        ax.set_title(f"{p} ({labels[i]})", fontsize=9, color="tab:red")
    fig.suptitle(f"{len(wrong)} of {len(x)} misclassified: predicted (true)", fontsize=10)
    fig.tight_layout()
    return fig


def grad_cam_figure(network: Any, x: np.ndarray, target: Any = None,
                    layer: int | str | Sequence[int | str] | None = None):
    """Each image of ``x`` above its Grad-CAM map laid over it: one row of maps per
    layer when ``layer`` is a list (e.g. ``["block1_1", "block2_1.conv2"]``)."""
    plt = _pyplot()
    chosen = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    layers = _layers(network)
    names = [_label(layers, *_locate(layers, one)) for one in chosen]
    predicted = np.argmax(network.predict(x), axis=1)
    rows = 1 + len(chosen)
    fig, axes = plt.subplots(rows, len(x), figsize=(len(x) * 1.1 + 0.9, rows * 1.2 + 0.4),
                             squeeze=False)
    for j in range(len(x)):
        axes[0, j].imshow(x[j, 0], cmap="gray_r", interpolation="nearest")
        axes[0, j].set_title(f"pred {predicted[j]}", fontsize=8)
    for row, (one, name) in enumerate(zip(chosen, names, strict=True), start=1):
        maps = grad_cam(network, x, target, one)
        for j in range(len(x)):
            axes[row, j].imshow(x[j, 0], cmap="gray", interpolation="nearest")
            axes[row, j].imshow(maps[j], cmap="jet", alpha=0.5, interpolation="bilinear")
        if len(chosen) > 1:
            axes[row, 0].text(-0.15, 0.5, name, transform=axes[row, 0].transAxes, fontsize=7,
                              rotation=90, ha="right", va="center")
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(f"Grad-CAM over {names[0]}" if len(names) == 1 else "Grad-CAM", fontsize=10)
    fig.tight_layout()
    return fig
