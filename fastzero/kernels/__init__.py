"""Compute kernels, one module per concern, in two backends with one contract.

``fastzero.kernels.numpy`` is the reference (the book's algorithms, in plain
NumPy); ``fastzero.kernels.numba`` implements the *same functions with the
same signatures* as ``numba.njit(parallel=True, cache=True)`` kernels. Each
backend package re-exports every name in :data:`KERNELS` at its top level.

The contract every kernel keeps:

* Kernels never validate. The layer (or public function) that calls a kernel
  has already checked ndim, shapes, dtypes and parameter ranges, converted
  the arrays to one float dtype (float32 or float64), and made them
  C-contiguous. A kernel's output has the dtype of its inputs.
* Kernels write only to the arrays they return, plus the state arrays an
  optimizer or batch-norm kernel is documented to update in place.
* ``cache`` objects returned by a forward kernel are opaque: only the same
  backend's backward kernel reads them. Everything else is an ndarray.

Shapes: ``x`` images are ``(N, C, H, W)``; filters ``W`` are ``(FN, C, FH, FW)``;
``OH = (H + 2*pad - FH) // stride + 1`` and likewise ``OW``.

Kernel signatures (module: function(args) -> result):

conv
    im2col(x, filter_h, filter_w, stride, pad) -> col (N*OH*OW, C*FH*FW)
    col2im(col, x_shape, filter_h, filter_w, stride, pad) -> x (N, C, H, W)
        the adjoint of im2col: overlapping windows are summed.
    conv_forward(x, W, b, stride, pad) -> (out (N, FN, OH, OW), cache)
    conv_backward(dout, cache, W, stride, pad) -> (dx, dW, db)
        dx like x, dW like W, db (FN,)
pool
    maxpool_forward(x, pool_h, pool_w, stride, pad) -> (out (N, C, OH, OW), argmax)
        padding is -inf (never selected); argmax is an integer array of
        out's shape holding the flat index ``i*pool_w + j`` of the maximum
        inside its window (first maximum on ties, as np.argmax).
    maxpool_backward(dout, argmax, x_shape, pool_h, pool_w, stride, pad) -> dx
dense
    affine_forward(x, W, b) -> out             x (N, D), W (D, M), b (M,)
    affine_backward(dout, x, W) -> (dx, dW, db)
activation
    relu_forward(x) -> (out, mask)             mask: bool, True where x <= 0
    relu_backward(dout, mask) -> dx
    sigmoid_forward(x) -> out                  overflow-free for large |x|
    sigmoid_backward(dout, out) -> dx          dout * (1 - out) * out
loss
    softmax(x) -> y                            x (N, K), row-wise, stable
    softmax_cross_entropy_forward(x, t) -> (loss, y)
        x (N, K) logits, t (N,) int64 labels in [0, K); loss is the book's
        -sum(log(y[n, t[n]] + 1e-7)) / N as a Python float; y = softmax(x).
    softmax_cross_entropy_backward(dout, y, t) -> dx
        t (N,) int64 labels or (N, K) target rows of y's dtype;
        dx = (y - onehot(t)) * dout / N, or (y - t) * dout / N for rows;
        dout is a Python float.
norm
    batchnorm_forward_train(x, gamma, beta, running_mean, running_var,
                            momentum, eps) -> (out, cache)
        x (N, D): per-column mean/var over N (the book's layer); or x
        (N, C, L), e.g. images as (N, C, H*W): per-channel mean/var over N
        and L; biased var; gamma, beta and the running statistics (D,) or
        (C,); out like x; updates running_mean and running_var IN PLACE:
        running = momentum * running + (1 - momentum) * batch_stat.
    batchnorm_forward_infer(x, gamma, beta, running_mean, running_var, eps) -> out
    batchnorm_backward(dout, cache, gamma) -> (dx, dgamma, dbeta)
        dx like dout, dgamma and dbeta like gamma
dropout
    dropout_forward(x, rand, ratio) -> (out, mask)
        rand: uniform [0, 1) array of x's shape drawn by the caller;
        mask = rand > ratio (bool); out = x * mask  (the book's Dropout).
    dropout_backward(dout, mask) -> dx
augment
    separable_blur(field, taps) -> out         field (N, H, W), taps (2r+1,):
        every plane convolved with taps along W, then along H; zero outside.
    bilinear_sample(x, src_y, src_x) -> out    x (N, C, H, W), src_* (N, Ho, Wo):
        out (N, C, Ho, Wo)[n, c, i, j] = x[n, c] at (src_y, src_x)[n, i, j],
        bilinear, zero outside the image (also for NaN points).
optim  (all update ``param`` and the state arrays IN PLACE, return None;
        param, grad and state share shape and dtype; eps = 1e-7 as the book)
    sgd_update(param, grad, lr)
    momentum_update(param, grad, v, lr, momentum)
        v = momentum*v - lr*grad; param += v
    nesterov_update(param, grad, v, lr, momentum)
        param += momentum*momentum*v; param -= (1 + momentum)*lr*grad;
        v *= momentum; v -= lr*grad     (the step uses the velocity before its update)
    adagrad_update(param, grad, h, lr)
        h += grad*grad; param -= lr*grad / (sqrt(h) + eps)
    rmsprop_update(param, grad, h, lr, decay_rate)
        h = decay_rate*h + (1 - decay_rate)*grad*grad;
        param -= lr*grad / (sqrt(h) + eps)
    adam_update(param, grad, m, v, lr_t, beta1, beta2)
        m += (1 - beta1)*(grad - m); v += (1 - beta2)*(grad**2 - v);
        param -= lr_t*m / (sqrt(v) + eps)    (lr_t bias-corrected by caller)
"""
from __future__ import annotations

#: Every kernel name, by module. Both backends export exactly these, and
#: :data:`fastzero.kernels.cases.CASES` has an example call of each.
KERNELS: dict[str, tuple[str, ...]] = {
    "conv": ("im2col", "col2im", "conv_forward", "conv_backward"),
    "pool": ("maxpool_forward", "maxpool_backward"),
    "dense": ("affine_forward", "affine_backward"),
    "activation": ("relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward"),
    "loss": ("softmax", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward"),
    "norm": ("batchnorm_forward_train", "batchnorm_forward_infer", "batchnorm_backward"),
    "dropout": ("dropout_forward", "dropout_backward"),
    "augment": ("separable_blur", "bilinear_sample"),
    "optim": (
        "sgd_update",
        "momentum_update",
        "nesterov_update",
        "adagrad_update",
        "rmsprop_update",
        "adam_update",
    ),
}

#: Flat list of every kernel name.
KERNEL_NAMES: tuple[str, ...] = tuple(n for names in KERNELS.values() for n in names)
