"""What the book's networks share: forward/backward over a layer sequence, accuracy,
gradients, parameter files, weight initialisation and the dtype switch."""
from __future__ import annotations

import copy
import os
import sys
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from fastzero import _backend, _threads, _validate, blocks, params_io
from fastzero.gradient import numerical_gradient as _numerical_gradient
from fastzero.layers import Affine, BatchNormalization, Dropout, Relu, Sigmoid, SoftmaxWithLoss

#: A network of these layers only is dense: its products run on BLAS's own threads
#: (:data:`fastzero._threads.BLAS_THREADED_PRODUCTS`); any other's in slices.
DENSE_LAYERS = (Affine, Relu, Sigmoid, Dropout, BatchNormalization)


def float_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as np.float32 or np.float64; TypeError for anything else."""
    resolved = np.dtype(dtype)
    if resolved not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {resolved}")
    return resolved


#: The storage dtype of a network made by ``Network.astype(np.float16)``: inference only.
HALF = np.dtype(np.float16)


def normal_sampler(seed: int | np.random.Generator | None) -> Callable[..., np.ndarray]:
    """``randn(*shape)`` drawing float64 standard normals.

    ``seed=None`` draws from ``np.random`` (so ``np.random.seed`` reproduces
    the book's weights); otherwise from ``np.random.default_rng(seed)``.
    """
    if seed is None:
        return np.random.randn
    rng = np.random.default_rng(seed)
    return lambda *shape: rng.standard_normal(shape)


class Network:
    """Base of the book's networks.

    A subclass builds ``params`` (name -> array), ``layers`` (an ``OrderedDict``
    or a list of layers and blocks, applied in order) and ``last_layer``
    (``SoftmaxWithLoss``), then calls :meth:`_bind_params`. Layers hold the
    very arrays in ``params``, so an optimizer updating ``params`` in place
    updates the layers. Layers are reached through the protocol of
    :mod:`fastzero.blocks` only, so a block of layers is one more layer here.

    Attributes
    ----------
    params : dict of str -> ndarray
        The learnable parameters, under the book's names (``W1``, ``b1``, ...).
    buffers : dict of str -> ndarray
        Non-learned state saved with the parameters (batch-norm running
        statistics), the layers' arrays; empty for most networks.
    dtype : np.dtype
        float64 (the book) or float32; parameters, activations and gradients
        all have it. float16 after :meth:`astype` (inference only).
    last_loss : float or None
        The loss computed by the last :meth:`gradient` call.
    input_dim : (C, H, W) or None
        The image shape a convolutional network was built for; :meth:`predict`
        refuses images of any other shape (None: the first layer checks).
    """

    params: dict[str, np.ndarray]
    layers: "OrderedDict[str, Any] | list[Any]"
    last_layer: SoftmaxWithLoss
    weight_decay_lambda: float = 0.0
    input_dim: tuple[int, ...] | None = None

    def __init__(self, dtype: Any) -> None:
        self.dtype = float_dtype(dtype)
        self.params = {}
        self.buffers = {}
        self.last_loss = None
        self.last_layer = SoftmaxWithLoss()

    def _new_weight(self, randn: Callable[..., np.ndarray], scale: float,
                    *shape: int) -> np.ndarray:
        """``scale * randn(*shape)`` (drawn in float64, as the book) in the net's dtype."""
        return (scale * randn(*shape)).astype(self.dtype)

    def _zeros(self, *shape: int) -> np.ndarray:
        return np.zeros(shape, dtype=self.dtype)

    def _add_layer(self, key: str, layer: Any) -> Any:
        """Append ``layer`` (a layer or a block) to ``layers`` (an ``OrderedDict``)
        under ``key``, and its parameters to ``params`` as ``<key>.<name>``; returns it."""
        self.layers[key] = layer
        for local, array in blocks.params_of(layer).items():
            self.params[f"{key}.{local}"] = array
        return layer

    def _bind_params(self) -> None:
        """Record which layer holds each parameter, under which of its names (by identity).

        Layer state that ``buffers`` does not hold yet is added to it as
        ``<layer>.<state>``; every parameter and buffer must be held by a layer.
        """
        by_id = {id(array): name for name, array in self.params.items()}
        #: (layer, [(its name for a parameter, the network's name)]) for every layer holding some.
        self._holders: list[tuple[Any, list[tuple[str, str]]]] = []
        for layer in self._layer_list():
            held = [(local, by_id[id(array)]) for local, array in blocks.params_of(layer).items()
                    if id(array) in by_id]
            if held:
                self._holders.append((layer, held))
        bound = {name: local for _, held in self._holders for local, name in held}
        unbound = set(self.params) - set(bound)
        assert not unbound, f"parameters not held by any layer: {sorted(unbound)}"
        #: Parameters under weight decay: the weights ``W`` of affine and convolution layers.
        self._decayed = [name for name, local in bound.items() if local.rpartition(".")[2] == "W"]

        held = {id(array) for array in self.buffers.values()}
        for key, layer in blocks.named_layers(self.layers):
            for local, array in blocks.state_of(layer).items():
                if id(array) not in held:
                    self.buffers[f"{key}.{local}"] = array
                    held.add(id(array))
        layer_state = {id(array) for layer in self._layer_list()
                       for array in blocks.state_of(layer).values()}
        loose = [name for name, array in self.buffers.items() if id(array) not in layer_state]
        assert not loose, f"buffers not held by any layer: {sorted(loose)}"
        #: Whether its matrix products run on BLAS's own threads (see DENSE_LAYERS).
        self._dense = all(type(layer) in DENSE_LAYERS for layer in _all_layers(self._layer_list()))

    def _layer_list(self) -> list[Any]:
        return list(self.layers.values()) if isinstance(self.layers, dict) else list(self.layers)

    def astype(self, dtype: Any) -> "Network":
        """A copy of the network with its parameters stored in ``dtype``; ``self`` is unchanged.

        float32 or float64 give an ordinary network of that dtype. float16 gives
        an inference-only network, as the book's ``ch08/half_float_network.py``:
        parameters and the activations passed between layers are stored in
        float16, every layer computes in float32 (its kernels convert on the
        way in), :meth:`predict` returns float32 scores, batch-norm running
        statistics stay float32; :meth:`gradient` and training-mode forwards
        raise ``TypeError``. Its files load into a network of any dtype.
        """
        target = np.dtype(dtype)
        if target != HALF:
            target = float_dtype(target)
        compute = np.dtype(np.float32) if target == HALF else target
        memo: dict[int, Any] = {id(m): m for m in map(sys.modules.get, _backend.BACKENDS.values())
                                if m is not None}  # kernel modules a layer refers to stay shared
        leaves = [layer for layer in _all_layers(self._layer_list())
                  if not isinstance(layer, blocks.Block)]  # a block's fixed biases too
        memo.update((id(a), a.astype(target)) for layer in leaves
                    for a in blocks.params_of(layer).values())
        memo.update((id(a), a.astype(compute)) for a in self.buffers.values())
        converted = copy.deepcopy(self, memo)
        converted.dtype = target
        for layer in _all_layers(converted._layer_list()):
            if isinstance(getattr(layer, "dtype", None), np.dtype):  # a block's input dtype
                layer.dtype = compute
        return converted

    def predict(self, x: np.ndarray, train_flg: bool = False) -> np.ndarray:
        """Scores (N, output_size) before the softmax.

        ``train_flg`` switches dropout and batch normalisation to training mode.
        """
        if self.input_dim is not None:
            self._check_input_dim(x)
        layers = self.layers
        layers = layers.values() if isinstance(layers, dict) else layers
        if self.dtype == HALF:
            if train_flg:  # so gradient(), numerical_gradient() and training refuse too
                raise TypeError(
                    f"{type(self).__name__}: a training-mode forward (train_flg=True) needs float32 "
                    "or float64 parameters; this network is stored in float16 for inference only "
                    "(convert it with astype(np.float32))"
                )
            *hidden, last = layers
            x = np.asarray(x, dtype=HALF)
            for layer in hidden:
                x = blocks.forward(layer, x, False).astype(HALF)
            return blocks.forward(last, x, False)
        products = _threads.BLAS_THREADED_PRODUCTS.set(self._dense)
        try:
            for layer in layers:
                x = blocks.forward(layer, x, train_flg)
        finally:
            _threads.BLAS_THREADED_PRODUCTS.reset(products)
        return x

    def _check_input_dim(self, x: Any) -> None:
        """ValueError unless ``x`` is (N, *input_dim), when the net has an ``input_dim``.

        Without it a convolutional net would silently crop a larger image (the
        pooling floors odd sizes away) or fail deep inside with a shape the
        user never passed.
        """
        if self.input_dim is None:
            return
        shape = np.shape(x)
        if shape[1:] != self.input_dim:
            c, h, w = self.input_dim
            raise ValueError(
                f"{type(self).__name__}: expected images of shape (N, {c}, {h}, {w}) for "
                f"input_dim {self.input_dim}, got shape {shape}"
            )

    def _weight_decay(self) -> float:
        if not self.weight_decay_lambda:
            return 0.0
        return 0.5 * self.weight_decay_lambda * sum(
            float(np.sum(self.params[name] ** 2)) for name in self._decayed
        )

    def loss(self, x: np.ndarray, t: np.ndarray, train_flg: bool = False) -> float:
        """Cross-entropy loss of ``x`` against labels ``t`` (N,) or one-hot (N, K),
        plus the weight-decay term ``0.5 * lambda * sum(W**2)``."""
        y = self.predict(x, train_flg)
        return self.last_layer.forward(y, t) + self._weight_decay()

    def accuracy(self, x: np.ndarray, t: np.ndarray, batch_size: int = 100) -> float:
        """Fraction of samples whose highest score is the label, predicted in batches.

        ``t`` holds labels (N,) or (N, 1) in ``[0, K)`` or target rows (N, K)
        (one-hot or soft: their argmax, as the book), ``K`` the output size;
        anything else is a ValueError (checked on the first
        batch's scores, before the others are computed). Unlike the book's
        batched version, a last partial batch is counted too.
        """
        where = f"{type(self).__name__}.accuracy"
        batch_size = _validate.integer(batch_size, where, "batch_size", 1)
        x = np.asarray(x)
        n = len(x) if x.ndim else 0
        if n == 0:
            raise ValueError(f"{where}: no samples (input shape {x.shape})")
        labels = None
        correct = 0
        for start in range(0, n, batch_size):
            y = self.predict(x[start:start + batch_size])
            if labels is None:
                labels = _validate.labels(t, n, y.shape[1], where)
            correct += int(np.sum(np.argmax(y, axis=1) == labels[start:start + batch_size]))
        return correct / n

    def gradient(self, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients of :meth:`loss` (training mode) by backpropagation, keyed like ``params``.

        Also stores the loss of this forward pass in :attr:`last_loss`.
        """
        self.last_loss = self.loss(x, t, train_flg=True)
        dout = self.last_layer.backward(1)
        products = _threads.BLAS_THREADED_PRODUCTS.set(self._dense)
        first, *rest = self._layer_list()
        try:
            for layer in reversed(rest):
                dout = layer.backward(dout)
            getattr(first, "_backward_params", first.backward)(dout)  # its dx would go unread
        finally:
            _threads.BLAS_THREADED_PRODUCTS.reset(products)
        grads = dict.fromkeys(self.params)
        for layer, held in self._holders:
            layer_grads = blocks.grads_of(layer)
            for local, name in held:
                grads[name] = layer_grads[local]
        if self.weight_decay_lambda:
            for name in self._decayed:
                grads[name] = grads[name] + self.weight_decay_lambda * self.params[name]
        return grads

    def numerical_gradient(self, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients of :meth:`loss` (training mode) by central differences; slow.

        The first of the many loss calls checks ``x`` and ``t`` in full; the
        others get them as checked and converted (``x`` in the network's
        dtype, one-hot rows as int64 labels), which the layers take as they are.
        """
        checked: list = []  # x and t as the first loss call converted them

        def loss_w(_):
            if checked:
                return self.loss(*checked, train_flg=True)
            loss = self.loss(x, t, train_flg=True)
            checked.extend(self._checked_batch(x, t))
            return loss

        return {name: _numerical_gradient(loss_w, p) for name, p in self.params.items()}

    def _checked_batch(self, x: Any, t: Any) -> tuple[Any, Any]:
        """``x`` and ``t`` after a loss call accepted them, as the layers converted them."""
        if isinstance(x, np.ndarray) and x.dtype.kind in "biuf" and self.dtype != HALF:
            x = np.ascontiguousarray(x, dtype=self.dtype)
        labels = self.last_layer._target
        if labels.dtype == np.int64:  # not soft target rows, which stay as given
            t = labels
        return x, t

    def state(self) -> dict[str, np.ndarray]:
        """``params`` and ``buffers`` together: everything a parameter file holds."""
        return {**self.params, **self.buffers}

    def save_params(self, file_name: str | os.PathLike = "params.npz") -> None:
        """Write :meth:`state` to ``file_name``, atomically: for a ``.pkl`` (or ``.pickle``)
        name the plain pickled dict of arrays the book's ``load_params`` reads, for any
        other name an ``.npz`` archive (see :func:`fastzero.params_io.save_params`)."""
        params_io.save_params(self.state(), file_name)

    def load_params(self, file_name: str | os.PathLike = "params.npz") -> None:
        """Load a file written by :meth:`save_params` or the book's pickled ``params.pkl``.

        Names and shapes must match this network; values are copied into the
        existing arrays (so the layers see them), cast to the network's dtype.
        """
        params_io.load_params(self.state(), file_name)


def _all_layers(layers: list[Any]) -> list[Any]:
    """``layers`` and, depth first, the children of every block among them."""
    found = []
    for layer in layers:
        found.append(layer)
        if isinstance(layer, blocks.Block):
            found += _all_layers(list(layer.children.values()))
    return found
