"""The book's layers (``common/layers.py``), computed by the active backend's kernels.

Same classes, constructor arguments, attributes and ``forward``/``backward``
methods as the book, so ``from fastzero.layers import *`` replaces
``from common.layers import *``. Like the book's module it also exports the
functions of :mod:`fastzero.functions` and ``im2col``/``col2im``.

Every layer

* validates its input in Python before any kernel runs (ndim, shapes against
  the weights, window sizes, strides, empty batches, dtypes) and raises
  ``ValueError``/``TypeError`` naming the layer and the expected vs. received
  shape or dtype;
* computes in float32 or float64: a layer with weights computes in its
  weights' dtype (the input is converted to it), other layers in the input's
  dtype; int and bool input becomes float64 (see :mod:`fastzero._validate`);
* keeps the very arrays it was given (``W``, ``b``, ``gamma``, ``beta``,
  ``running_mean``, ``running_var``) and reads them at every call, so an
  optimizer's in-place update is seen by the next ``forward``;
* looks the backend up when ``forward`` is called (``fastzero.set_backend``
  takes effect on the next ``forward``); ``backward`` runs on the backend
  that ran the matching ``forward``, whose cached data it reads.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fastzero import _backend
from fastzero import _validate as v
from fastzero.blocks import Block
from fastzero.functions import *  # noqa: F401,F403  (the book's layers.py exports them too)
from fastzero.functions import __all__ as _functions_all
from fastzero.util import col2im, im2col  # noqa: F401

__all__ = [
    "MulLayer",
    "AddLayer",
    "Relu",
    "Sigmoid",
    "Affine",
    "SoftmaxWithLoss",
    "Dropout",
    "BatchNormalization",
    "Convolution",
    "Pooling",
    "SpatialBatchNormalization",
    "ResidualBlock",
    "im2col",
    "col2im",
    *_functions_all,
]


class MulLayer:
    """``x * y`` (chapter 5's first layer); ``backward`` returns ``(dx, dy)``."""

    def __init__(self) -> None:
        self.x = None
        self.y = None

    def forward(self, x: Any, y: Any) -> Any:
        self.x = x
        self.y = y
        return x * y

    def backward(self, dout: Any) -> tuple[Any, Any]:
        return dout * self.y, dout * self.x


class AddLayer:
    """``x + y``; ``backward`` returns ``(dx, dy)``."""

    def __init__(self) -> None:
        pass

    def forward(self, x: Any, y: Any) -> Any:
        return x + y

    def backward(self, dout: Any) -> tuple[Any, Any]:
        return dout * 1, dout * 1


class _Layer:
    """Plumbing shared by the kernel-backed layers: the backend that ran the
    last forward, the check of ``backward``'s ``dout`` against that forward,
    and the layer protocol of :mod:`fastzero.blocks` (parameters, gradients
    and state by name, ``takes_train_flg``) read from the attributes named in
    ``param_names`` and ``state_names``."""

    #: Attributes holding learnable parameters; ``backward`` sets ``d<name>`` for each.
    param_names: tuple[str, ...] = ()
    #: Attributes holding state that training forwards update and files must keep.
    state_names: tuple[str, ...] = ()
    #: Whether ``forward`` takes ``train_flg`` (training vs. inference mode).
    takes_train_flg: bool = False

    _k = None  # kernel module of the forward that backward must match
    _out_shape: tuple[int, ...] = ()
    _dtype: np.dtype | None = None
    _needs = "forward()"

    @property
    def _name(self) -> str:
        return type(self).__name__

    def named_params(self) -> dict[str, np.ndarray]:
        """The learnable parameters by name (the very arrays the layer holds)."""
        return {name: getattr(self, name) for name in self.param_names}

    def named_grads(self) -> dict[str, np.ndarray | None]:
        """The gradients of the last ``backward``, keyed like :meth:`named_params`."""
        return {name: getattr(self, "d" + name) for name in self.param_names}

    def named_state(self) -> dict[str, np.ndarray]:
        """Non-learned state by name (the very arrays, updated in place)."""
        return {name: getattr(self, name) for name in self.state_names}

    def _forwarded(self, k: Any, out_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._k, self._out_shape, self._dtype = k, out_shape, dtype

    def _check_param(self, name: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
        """Backward's check that a parameter still has the forward's shape and dtype."""
        if arr.shape != shape or arr.dtype != self._dtype:
            raise ValueError(
                f"{self._name}: {name} changed between forward() and backward(): expected "
                f"{tuple(shape)} {self._dtype}, got {arr.shape} {arr.dtype}"
            )

    def _backward_params(self, dout: Any) -> None:
        """``backward`` for a network's first layer, whose ``dx`` nobody reads: the
        parameter gradients only, the same as ``backward`` sets them."""
        self.backward(dout)

    def _start_backward(self, dout: Any) -> tuple[Any, np.ndarray]:
        k = self._k
        if k is None:
            raise RuntimeError(f"{self._name}: backward() called without a preceding {self._needs}")
        if not (type(dout) is np.ndarray and dout.dtype == self._dtype
                and dout.shape == self._out_shape and dout.flags.c_contiguous
                and dout.flags.writeable):  # else the full check, which raises or converts
            dout = v.as_float_array(dout, self._name, "dout", self._dtype)
            v.check_shape(dout, self._out_shape, self._name, "dout (the forward output's shape)")
        return k, dout


class Relu(_Layer):
    """``max(0, x)`` elementwise on ``x`` of any shape; ``mask`` is ``x <= 0``."""

    def __init__(self) -> None:
        self.mask = None

    def forward(self, x: Any) -> np.ndarray:
        x = v.layer_input(x, "Relu", "(N, ...)")
        k = _backend.kernels()
        out, mask = k.relu_forward(x)
        self.mask = self._mask = mask
        self._forwarded(k, x.shape, x.dtype)
        return out

    def backward(self, dout: Any) -> np.ndarray:
        k, dout = self._start_backward(dout)
        return k.relu_backward(dout, self._mask)


class Sigmoid(_Layer):
    """``1 / (1 + exp(-x))`` elementwise on ``x`` of any shape; ``out`` is kept for backward."""

    def __init__(self) -> None:
        self.out = None

    def forward(self, x: Any) -> np.ndarray:
        x = v.layer_input(x, "Sigmoid", "(N, ...)")
        k = _backend.kernels()
        self.out = self._out = out = k.sigmoid_forward(x)
        self._forwarded(k, x.shape, x.dtype)
        return out

    def backward(self, dout: Any) -> np.ndarray:
        k, dout = self._start_backward(dout)
        return k.sigmoid_backward(dout, self._out)


class Affine(_Layer):
    """Fully connected layer ``x @ W + b``.

    Parameters
    ----------
    W : (D, M)
    b : (M,), or a scalar or array that broadcasts to it as in the book's ``x @ W + b``

    ``forward`` takes ``x`` (N, D) or (N, d1, d2, ...) with ``d1*d2*... = D``,
    flattened per sample; ``backward`` returns ``dx`` in the original shape
    and sets ``dW`` (D, M) and ``db`` (M,).
    """

    param_names = ("W", "b")

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        self.W = W
        self.b = b
        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None

    def _params(self) -> tuple[np.ndarray, np.ndarray]:
        W = v.as_float_array(self.W, "Affine", "W")
        if W.ndim != 2 or W.size == 0:
            raise ValueError(f"Affine: expected W of shape (D, M), got shape {W.shape}")
        return W, v.bias(self.b, W.shape[1], W.dtype, "Affine")

    def forward(self, x: Any) -> np.ndarray:
        W, b = self._params()
        d = W.shape[0]
        if not (type(x) is np.ndarray and x.ndim == 2 and x.shape[1] == d and x.shape[0]
                and x.dtype == W.dtype and x.flags.c_contiguous and x.flags.writeable):
            x = self._checked_input(x, d, W.dtype)  # else (N, D) as it is: the common case
        self.original_x_shape = shape = x.shape
        self.x = self._x = x2 = x if len(shape) == 2 else x.reshape(shape[0], -1)
        k = _backend.kernels()
        out = k.affine_forward(x2, W, b)
        self._forwarded(k, out.shape, W.dtype)
        return out

    @staticmethod
    def _checked_input(x: Any, d: int, dtype: np.dtype) -> np.ndarray:
        x = v.layer_input(x, "Affine", f"(N, {d})", min_ndim=2, dtype=dtype)
        if x[0].size != d:
            raise ValueError(
                f"Affine: expected input with {d} features per sample (N, {d}) "
                f"or (N, ...) with {d} values per sample, got shape {x.shape}"
            )
        return x

    def backward(self, dout: Any) -> np.ndarray:
        dx = self._gradients(dout, need_dx=True)
        shape = self.original_x_shape
        return dx if len(shape) == 2 else dx.reshape(shape)

    def _backward_params(self, dout: Any) -> None:
        self._gradients(dout, need_dx=False)

    def _gradients(self, dout: Any, need_dx: bool) -> np.ndarray | None:
        """Sets ``dW`` and ``db``; returns ``dx`` (N, D), or None when not ``need_dx``."""
        k, dout = self._start_backward(dout)
        W, _ = self._params()
        x = self._x
        self._check_param("W", W, (x.shape[1], self._out_shape[1]))
        dx, self.dW, self.db = k.affine_backward(dout, x, W, need_dx=need_dx)
        return dx


class SoftmaxWithLoss(_Layer):
    """Softmax followed by the cross-entropy loss.

    ``forward(x, t)`` takes logits ``x`` (N, K) (or one sample (K,)) and
    targets ``t``: int labels (N,) or (N, 1) in ``[0, K)``, or target rows
    (N, K) -- one-hot, or soft (label smoothing, mixup; any finite rows, as
    the book). It returns the book's loss ``-sum(log(y[n, c[n]] + 1e-7)) / N``
    (a float), ``c`` the labels or the argmax of each target row, and keeps
    ``loss``, ``y`` (the softmax output) and ``t``. ``backward(dout=1)``
    returns ``dout * (y - T) / N``, ``T`` the target rows (one-hot rows for
    labels): for soft rows that sum to 1 this is the gradient of the soft
    cross-entropy ``-sum(T * log(y)) / N``, as the book computes it.
    """

    def __init__(self) -> None:
        self.loss = None
        self.y = None
        self.t = None

    def forward(self, x: Any, t: Any) -> float:
        x = v.layer_input(x, "SoftmaxWithLoss", "(N, K) or (K,)", ndim=(1, 2))
        rows = x.reshape(-1, x.shape[-1])
        n, classes = rows.shape
        labels, soft = v.targets(t, n, classes, "SoftmaxWithLoss", one_hot_ndim=x.ndim)
        k = _backend.kernels()
        self.loss, y = k.softmax_cross_entropy_forward(rows, labels)
        self._y = y
        self._target = labels if soft is None else v.as_float_array(soft, "SoftmaxWithLoss", "t",
                                                                     x.dtype)
        self.y = y.reshape(x.shape)
        self.t = t
        self._forwarded(k, x.shape, x.dtype)
        return self.loss

    def backward(self, dout: float = 1) -> np.ndarray:
        if self._k is None:
            raise RuntimeError("SoftmaxWithLoss: backward() called without a preceding forward()")
        dout = v.real(dout, "SoftmaxWithLoss", "dout")
        dx = self._k.softmax_cross_entropy_backward(dout, self._y, self._target)
        return dx.reshape(self._out_shape)


class Dropout(_Layer):
    """Dropout: in training each unit is kept where ``np.random.rand() > dropout_ratio``.

    The uniform draw is ``np.random.rand(*x.shape)`` as in the book, so
    ``np.random.seed`` reproduces the book's masks (in float32 the draw is
    rounded to float32 before the comparison). At test time
    (``train_flg=False``) the output is ``x * (1 - dropout_ratio)``.
    """

    _needs = "forward(x, train_flg=True)"
    takes_train_flg = True

    def __init__(self, dropout_ratio: float = 0.5) -> None:
        self.dropout_ratio = v.real(dropout_ratio, "Dropout", "dropout_ratio", 0.0, 1.0, True)
        self.mask = None

    def forward(self, x: Any, train_flg: bool = True) -> np.ndarray:
        ratio = v.real(self.dropout_ratio, "Dropout", "dropout_ratio", 0.0, 1.0, True)
        x = v.layer_input(x, "Dropout", "(N, ...)")
        if not train_flg:
            self._k = None
            return x * (1.0 - ratio)
        rand = np.asarray(np.random.rand(*x.shape), dtype=x.dtype)
        k = _backend.kernels()
        out, mask = k.dropout_forward(x, rand, ratio)
        self.mask = self._mask = mask
        self._forwarded(k, x.shape, x.dtype)
        return out

    def backward(self, dout: Any) -> np.ndarray:
        k, dout = self._start_backward(dout)
        return k.dropout_backward(dout, self._mask)


class BatchNormalization(_Layer):
    """Batch normalisation with learnable scale ``gamma`` and shift ``beta``.

    Parameters
    ----------
    gamma, beta : (D,)
    momentum : float
        Running statistics are updated as ``momentum * running + (1 - momentum) * batch``.
    running_mean, running_var : (D,) or None
        Updated IN PLACE by every training forward (created as zeros of
        gamma's dtype on the first forward when None); used when
        ``train_flg=False``.

    Input is (N, D) or (N, C, H, W) with ``C*H*W = D``: as in the book, a
    4-D input is flattened per sample and every activation is normalised on
    its own (not per channel). ``eps`` is the book's ``10e-7``.
    """

    eps = 10e-7
    _needs = "forward(x, train_flg=True)"
    param_names = ("gamma", "beta")
    state_names = ("running_mean", "running_var")
    takes_train_flg = True

    def __init__(self, gamma: np.ndarray, beta: np.ndarray, momentum: float = 0.9,
                 running_mean: np.ndarray | None = None,
                 running_var: np.ndarray | None = None) -> None:
        self.gamma = gamma
        self.beta = beta
        self.momentum = v.real(momentum, "BatchNormalization", "momentum", 0.0, 1.0)
        self.input_shape = None
        self.running_mean = running_mean
        self.running_var = running_var
        self.batch_size = None
        self.dgamma = None
        self.dbeta = None

    def _params(self) -> tuple[np.ndarray, np.ndarray]:
        gamma, beta = v.weights("BatchNormalization", gamma=self.gamma, beta=self.beta)
        if gamma.ndim != 1 or gamma.size == 0:
            raise ValueError(f"BatchNormalization: expected gamma of shape (D,), got shape {gamma.shape}")
        v.check_shape(beta, gamma.shape, "BatchNormalization", "beta (like gamma)")
        return gamma, beta

    def _running(self, name: str, d: int, dtype: np.dtype) -> np.ndarray:
        """``running_mean``/``running_var``, created if None, checked for an in-place update."""
        arr = getattr(self, name)
        if arr is None:
            arr = np.zeros(d, dtype=dtype)
            setattr(self, name, arr)
        if not isinstance(arr, np.ndarray) or arr.dtype != dtype:
            got = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
            raise TypeError(
                f"BatchNormalization: {name} must be a {dtype} ndarray like gamma "
                f"(it is updated in place), got {got}"
            )
        v.check_shape(arr, (d,), "BatchNormalization", name)
        if not (arr.flags.c_contiguous and arr.flags.writeable):
            raise ValueError(
                f"BatchNormalization: {name} must be writeable and C-contiguous (it is updated in place)"
            )
        return arr

    def named_state(self) -> dict[str, np.ndarray]:
        """``running_mean`` and ``running_var``, created as the first forward would if None."""
        gamma, _ = self._params()
        return {name: self._running(name, gamma.size, gamma.dtype) for name in self.state_names}

    def forward(self, x: Any, train_flg: bool = True) -> np.ndarray:
        gamma, beta = self._params()
        d = gamma.size
        x = v.layer_input(x, "BatchNormalization", f"(N, {d}) or (N, C, H, W)", ndim=(2, 4),
                          dtype=gamma.dtype)
        if x[0].size != d:
            raise ValueError(
                f"BatchNormalization: expected input with {d} features per sample "
                f"(N, {d}) or (N, C, H, W) with C*H*W = {d}, got shape {x.shape}"
            )
        return self._normalise(x, gamma, beta, train_flg)

    def _layout(self, a: np.ndarray) -> np.ndarray:
        """``a`` as the kernels take it: (N, D), each column normalised over N."""
        return a.reshape(a.shape[0], -1)

    def _normalise(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                   train_flg: bool) -> np.ndarray:
        """The kernels on a validated ``x``; a training forward updates the running statistics."""
        momentum = v.real(self.momentum, "BatchNormalization", "momentum", 0.0, 1.0)
        running_mean = self._running("running_mean", gamma.size, gamma.dtype)
        running_var = self._running("running_var", gamma.size, gamma.dtype)
        self.input_shape = x.shape
        features = self._layout(x)
        k = _backend.kernels()
        if train_flg:
            out, self._cache = k.batchnorm_forward_train(
                features, gamma, beta, running_mean, running_var, momentum, self.eps
            )
            self.batch_size = x.shape[0]
            self._forwarded(k, x.shape, gamma.dtype)
        else:
            out = k.batchnorm_forward_infer(features, gamma, beta, running_mean, running_var,
                                            self.eps)
            self._k = None
        return out.reshape(x.shape)

    def backward(self, dout: Any) -> np.ndarray:
        k, dout = self._start_backward(dout)
        gamma, _ = self._params()
        features = self._layout(dout)
        self._check_param("gamma", gamma, (features.shape[1],))
        dx, self.dgamma, self.dbeta = k.batchnorm_backward(features, self._cache, gamma)
        return dx.reshape(self._out_shape)


class Convolution(_Layer):
    """2-D convolution (cross-correlation, as in the book) by im2col.

    Parameters
    ----------
    W : (FN, C, FH, FW)
        Filters.
    b : (FN,), or a scalar or array that broadcasts to it (the book's ``b = 0``)
    stride : int >= 1
    pad : int >= 0
        Zero padding on each side of H and W.

    ``forward`` takes ``x`` (N, C, H, W) and returns (N, FN, OH, OW) with
    ``OH = (H + 2*pad - FH) // stride + 1`` (likewise OW); ``backward`` sets
    ``dW`` and ``db``.
    """

    param_names = ("W", "b")

    def __init__(self, W: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0) -> None:
        self.W = W
        self.b = b
        self.stride = v.integer(stride, "Convolution", "stride", 1)
        self.pad = v.integer(pad, "Convolution", "pad", 0)
        self.x = None
        self.dW = None
        self.db = None

    def _params(self) -> tuple[np.ndarray, np.ndarray]:
        W = v.as_float_array(self.W, "Convolution", "W")
        if W.ndim != 4 or W.size == 0:
            raise ValueError(f"Convolution: expected W of shape (FN, C, FH, FW), got shape {W.shape}")
        return W, v.bias(self.b, W.shape[0], W.dtype, "Convolution")

    def forward(self, x: Any) -> np.ndarray:
        W, b = self._params()
        stride = v.integer(self.stride, "Convolution", "stride", 1)
        pad = v.integer(self.pad, "Convolution", "pad", 0)
        _, c, fh, fw = W.shape
        layout = f"(N, {c}, H, W)"
        x = v.layer_input(x, "Convolution", layout, ndim=4, dtype=W.dtype)
        if x.shape[1] != c:
            raise ValueError(
                f"Convolution: expected input with {c} channels {layout}, got shape {x.shape}"
            )
        v.window_fits(x.shape, fh, fw, pad, "Convolution")
        k = _backend.kernels()
        out, self._cache = k.conv_forward(x, W, b, stride, pad)
        self.x = x
        self._geometry = (W.shape, stride, pad)
        self._forwarded(k, out.shape, W.dtype)
        return out

    def backward(self, dout: Any) -> np.ndarray:
        return self._gradients(dout, need_dx=True)

    def _backward_params(self, dout: Any) -> None:
        self._gradients(dout, need_dx=False)

    def _gradients(self, dout: Any, need_dx: bool) -> np.ndarray | None:
        """Sets ``dW`` and ``db``; returns ``dx`` (N, C, H, W), or None when not ``need_dx``."""
        k, dout = self._start_backward(dout)
        W, _ = self._params()
        w_shape, stride, pad = self._geometry
        self._check_param("W", W, w_shape)
        dx, self.dW, self.db = k.conv_backward(dout, self._cache, W, stride, pad, need_dx=need_dx)
        return dx


class Pooling(_Layer):
    """Max pooling over ``pool_h x pool_w`` windows, per channel.

    Parameters
    ----------
    pool_h, pool_w : int >= 1
    stride : int >= 1
        The book's default, 2.
    pad : int, 0 <= pad < min(pool_h, pool_w)

    Unlike the book, whose ``Pooling`` computes the output size without the
    padding (so any ``pad > 0`` breaks it), the output here is (N, C, OH, OW)
    with ``OH = (H + 2*pad - pool_h) // stride + 1`` and padding that never
    wins the max: padded cells count as ``-inf`` and every window holds at
    least one real cell. Ties go to the first maximum in the window (row-major),
    as ``np.argmax``; ``arg_max`` (N, C, OH, OW) holds its in-window index.
    """

    def __init__(self, pool_h: int, pool_w: int, stride: int = 2, pad: int = 0) -> None:
        self.pool_h, self.pool_w, self.stride, self.pad = self._geometry(pool_h, pool_w, stride, pad)
        self.x = None
        self.arg_max = None

    @staticmethod
    def _geometry(pool_h: Any, pool_w: Any, stride: Any, pad: Any) -> tuple[int, int, int, int]:
        pool_h = v.integer(pool_h, "Pooling", "pool_h", 1)
        pool_w = v.integer(pool_w, "Pooling", "pool_w", 1)
        stride = v.integer(stride, "Pooling", "stride", 1)
        pad = v.integer(pad, "Pooling", "pad", 0)
        if pad >= min(pool_h, pool_w):
            raise ValueError(
                f"Pooling: pad must be smaller than the window {pool_h}x{pool_w} "
                f"(a window of padding only has no maximum), got pad {pad}"
            )
        return pool_h, pool_w, stride, pad

    def forward(self, x: Any) -> np.ndarray:
        geometry = self._geometry(self.pool_h, self.pool_w, self.stride, self.pad)
        pool_h, pool_w, stride, pad = geometry
        x = v.layer_input(x, "Pooling", "(N, C, H, W)", ndim=4)
        v.window_fits(x.shape, pool_h, pool_w, pad, "Pooling", window="window")
        k = _backend.kernels()
        out, self.arg_max = k.maxpool_forward(x, pool_h, pool_w, stride, pad)
        self._argmax = self.arg_max
        self.x = x
        self._x_shape, self._window = x.shape, geometry
        self._forwarded(k, out.shape, x.dtype)
        return out

    def backward(self, dout: Any) -> np.ndarray:
        k, dout = self._start_backward(dout)
        return k.maxpool_backward(dout, self._argmax, self._x_shape, *self._window)


class SpatialBatchNormalization(BatchNormalization):
    """Batch normalisation per channel of images (torch's ``BatchNorm2d``).

    Parameters as :class:`BatchNormalization`, with ``gamma``, ``beta``,
    ``running_mean`` and ``running_var`` of shape (C,). ``forward`` takes
    ``x`` (N, C, H, W) and normalises each channel over N, H and W (the
    book's layer normalises each of the C*H*W activations over N alone).
    """

    def forward(self, x: Any, train_flg: bool = True) -> np.ndarray:
        gamma, beta = self._params()
        c = gamma.size
        x = v.layer_input(x, "SpatialBatchNormalization", f"(N, {c}, H, W)", ndim=4,
                          dtype=gamma.dtype)
        if x.shape[1] != c:
            raise ValueError(
                f"SpatialBatchNormalization: expected input with {c} channels (N, {c}, H, W), "
                f"got shape {x.shape}"
            )
        return self._normalise(x, gamma, beta, train_flg)

    def _layout(self, a: np.ndarray) -> np.ndarray:
        """``a`` as the kernels take it: (N, C, H*W), each channel normalised over N, H and W."""
        return a.reshape(a.shape[0], a.shape[1], -1)


class ResidualBlock(Block):
    """torchvision's basic residual block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    ``conv1`` is 3x3 with ``stride``, ``conv2`` 3x3 with stride 1, both padded
    by 1 and without bias; ``bn1``/``bn2`` are :class:`SpatialBatchNormalization`.
    The shortcut is the identity when the shape is kept, otherwise a 1x1
    convolution with ``stride`` (no bias) and a batch norm (``shortcut_conv``,
    ``shortcut_bn``).

    Parameters
    ----------
    in_channels, out_channels : int
    stride : int >= 1
    dtype : np.float64 (default) or np.float32
    seed : int, np.random.Generator or None
        Convolution weights are He-initialised, ``sqrt(2 / fan_in) * randn``,
        drawn from ``np.random`` when None (as the book's networks);
        ``gamma`` ones, ``beta`` zeros.

    ``forward`` takes ``x`` (N, in_channels, H, W) and returns (N,
    out_channels, OH, OW) with ``OH = (H - 1) // stride + 1``. Parameters
    (:meth:`named_params`): ``conv1.W``, ``bn1.gamma``, ``bn1.beta``,
    ``conv2.W``, ``bn2.gamma``, ``bn2.beta`` and, with a projection,
    ``shortcut_conv.W``, ``shortcut_bn.gamma``, ``shortcut_bn.beta``; state:
    each batch norm's ``running_mean`` and ``running_var``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *,
                 dtype: Any = np.float64, seed: int | np.random.Generator | None = None) -> None:
        super().__init__()
        in_channels = v.integer(in_channels, "ResidualBlock", "in_channels", 1)
        out_channels = v.integer(out_channels, "ResidualBlock", "out_channels", 1)
        stride = v.integer(stride, "ResidualBlock", "stride", 1)
        self.dtype = np.dtype(dtype)
        rng = None if seed is None else np.random.default_rng(seed)

        def randn(*shape: int) -> np.ndarray:
            return np.random.randn(*shape) if rng is None else rng.standard_normal(shape)

        def conv(cin: int, size: int, conv_stride: int, pad: int) -> Convolution:
            shape = (out_channels, cin, size, size)
            W = (np.sqrt(2.0 / (cin * size * size)) * randn(*shape)).astype(self.dtype)
            return Convolution(W, np.zeros(out_channels, self.dtype), conv_stride, pad)

        def norm() -> SpatialBatchNormalization:
            return SpatialBatchNormalization(np.ones(out_channels, self.dtype),
                                             np.zeros(out_channels, self.dtype))

        self.children["conv1"] = conv(in_channels, 3, stride, 1)
        self.children["bn1"] = norm()
        self.children["relu1"] = Relu()
        self.children["conv2"] = conv(out_channels, 3, 1, 1)
        self.children["bn2"] = norm()
        self.projection = stride != 1 or in_channels != out_channels
        if self.projection:
            self.children["shortcut_conv"] = conv(in_channels, 1, stride, 0)
            self.children["shortcut_bn"] = norm()
        self.children["relu2"] = Relu()
        self.in_channels = in_channels

    #: Convolution biases: held at zero, not learned (torchvision's ``bias=False``).
    _FIXED = frozenset({"conv1.b", "conv2.b", "shortcut_conv.b"})

    def named_params(self) -> dict[str, np.ndarray]:
        return {k: a for k, a in super().named_params().items() if k not in self._FIXED}

    def named_grads(self) -> dict[str, np.ndarray | None]:
        return {k: g for k, g in super().named_grads().items() if k not in self._FIXED}

    def forward(self, x: Any, train_flg: bool = True) -> np.ndarray:
        layers = self.children
        x = v.layer_input(x, "ResidualBlock", f"(N, {self.in_channels}, H, W)", ndim=4,
                          dtype=self.dtype)
        out = layers["relu1"].forward(layers["bn1"].forward(layers["conv1"].forward(x), train_flg))
        out = layers["bn2"].forward(layers["conv2"].forward(out), train_flg)
        if self.projection:
            x = layers["shortcut_bn"].forward(layers["shortcut_conv"].forward(x), train_flg)
        return layers["relu2"].forward(out + x)

    def backward(self, dout: Any) -> np.ndarray:
        layers = self.children
        dsum = layers["relu2"].backward(dout)
        dx = layers["conv2"].backward(layers["bn2"].backward(dsum))
        dx = layers["conv1"].backward(layers["bn1"].backward(layers["relu1"].backward(dx)))
        if self.projection:
            dsum = layers["shortcut_conv"].backward(layers["shortcut_bn"].backward(dsum))
        return dx + dsum
