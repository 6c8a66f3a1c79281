"""Blocks: a layer made of layers in a network, through the layer protocol of
fastzero.blocks: names, gradients, train_flg, training, parameter files, checkpoints."""
from collections import OrderedDict

import numpy as np
import pytest

from fastzero import blocks
from fastzero.blocks import Block
from fastzero.layers import (Affine, BatchNormalization, Convolution, Relu, ResidualBlock,
                             SpatialBatchNormalization)
from fastzero.nets._base import Network
from fastzero.trainer import Trainer
from gradcheck import layer_gradcheck, numeric_grad

SHAPE = (2, 4, 4)  # (C, H, W) of the test network's input
CLASSES = 3


class SkipConvBlock(Block):
    """conv3x3 - batch norm - relu - conv3x3, plus the input (a two-convolution skip block)."""

    def __init__(self, channels, height, width, rng, dtype):
        super().__init__()
        d = channels * height * width

        def conv():
            return Convolution(rng.normal(0, 0.3, (channels, channels, 3, 3)).astype(dtype),
                               rng.normal(0, 0.1, channels).astype(dtype), stride=1, pad=1)

        self.children["conv1"] = conv()
        self.children["bn1"] = BatchNormalization(rng.normal(1, 0.2, d).astype(dtype),
                                                  rng.normal(0, 0.1, d).astype(dtype))
        self.children["relu1"] = Relu()
        self.children["conv2"] = conv()

    def forward(self, x, train_flg=True):
        out = x
        for layer in self.children.values():
            out = blocks.forward(layer, out, train_flg)
        return out + x

    def backward(self, dout):
        dx = dout
        for layer in reversed(self.children.values()):
            dx = layer.backward(dx)
        return dx + dout


class Outer(Block):
    """A block holding a block: names and state nest."""

    def __init__(self, inner):
        super().__init__()
        self.children["inner"] = inner

    def forward(self, x, train_flg=True):
        return blocks.forward(self.children["inner"], x, train_flg)

    def backward(self, dout):
        return self.children["inner"].backward(dout)


class BlockNet(Network):
    """block - relu - nested block - affine - softmax."""

    def __init__(self, seed=0, dtype=np.float64):
        super().__init__(dtype)
        rng = np.random.default_rng(seed)
        self.input_dim = SHAPE
        self.layers = OrderedDict()
        self._add_layer("block1", SkipConvBlock(*SHAPE, rng, self.dtype))
        self._add_layer("relu1", Relu())
        self._add_layer("block2", Outer(SkipConvBlock(*SHAPE, rng, self.dtype)))
        flat = int(np.prod(SHAPE))
        self._add_layer("affine1", Affine(rng.normal(0, 0.3, (flat, CLASSES)).astype(self.dtype),
                                          rng.normal(0, 0.1, CLASSES).astype(self.dtype)))
        self._bind_params()


def _data(n=6, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *SHAPE)), rng.integers(0, CLASSES, n)


def test_block_parameters_and_state_by_name():
    net = BlockNet()
    conv_bn = ["conv1.W", "conv1.b", "bn1.gamma", "bn1.beta", "conv2.W", "conv2.b"]
    assert list(net.params) == [*(f"block1.{n}" for n in conv_bn),
                                *(f"block2.inner.{n}" for n in conv_bn), "affine1.W", "affine1.b"]
    assert list(net.buffers) == [f"{b}.bn1.{s}" for b in ("block1", "block2.inner")
                                 for s in ("running_mean", "running_var")]
    inner = net.layers["block2"].children["inner"]
    assert inner.children["conv2"].W is net.params["block2.inner.conv2.W"]
    assert inner.children["bn1"].running_var is net.buffers["block2.inner.bn1.running_var"]
    assert blocks.takes_train_flg(net.layers["block1"])
    assert not blocks.takes_train_flg(net.layers["relu1"])


def test_block_net_backprop_matches_numerical_gradient(backend):
    net = BlockNet(seed=2)
    x, t = _data()
    grads = net.gradient(x, t)
    assert list(grads) == list(net.params)
    for name, param in net.params.items():
        numeric = numeric_grad(lambda: net.loss(x, t, train_flg=True), param)
        # The floor of the scale: a convolution bias feeding batch norm has
        # no gradient, and central differences leave round-off near 1e-11.
        scale = max(np.linalg.norm(grads[name]) + np.linalg.norm(numeric), 1e-4)
        assert np.linalg.norm(grads[name] - numeric) / scale < 1e-6, name


def test_block_passes_train_flg_to_its_batch_norms(backend):
    net = BlockNet(seed=3)
    x, t = _data(n=8)
    before = {name: value.copy() for name, value in net.buffers.items()}
    infer = net.predict(x)
    assert all(np.array_equal(net.buffers[n], before[n]) for n in before)  # inference: untouched
    train = net.predict(x, train_flg=True)
    assert not np.allclose(train, infer)
    assert all(not np.array_equal(net.buffers[n], before[n]) for n in before)


def test_block_net_trains_saves_and_resumes(backend, tmp_path):
    net = BlockNet(seed=4)
    x, t = _data(n=12, seed=5)
    trainer = Trainer(net, x, t, x, t, epochs=2, mini_batch_size=6, optimizer="Adam",
                      optimizer_param={"lr": 0.01}, verbose=False, seed=0)
    before = {name: value.copy() for name, value in net.state().items()}
    loss = trainer.train_step()
    assert np.isfinite(loss)
    assert all(not np.array_equal(net.state()[n], before[n]) for n in before)  # params and buffers
    trainer.train_step()  # end of epoch 1

    path = tmp_path / "params.npz"
    net.save_params(path)
    loaded = BlockNet(seed=9)
    loaded.load_params(path)
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))

    checkpoint = tmp_path / "checkpoint.npz"
    trainer.save_checkpoint(checkpoint)
    trainer.train()
    fresh = BlockNet(seed=10)
    resumed = Trainer(fresh, x, t, x, t, epochs=2, mini_batch_size=6, optimizer="Adam",
                      optimizer_param={"lr": 0.01}, verbose=False, seed=1)
    resumed.load_checkpoint(checkpoint)
    resumed.train()
    for name, value in net.state().items():
        np.testing.assert_array_equal(fresh.state()[name], value, err_msg=name)
    assert resumed.train_loss_list == trainer.train_loss_list


def test_book_layer_objects_answer_through_their_attributes():
    class BookBatchNorm:  # the book's attribute names, no protocol
        def __init__(self, gamma, beta):
            self.gamma, self.beta = gamma, beta
            self.running_mean = self.running_var = None
            self.dgamma = self.dbeta = None

        def forward(self, x, train_flg=True):
            return x

    class BookRelu:
        def forward(self, x):
            return x

    layer = BookBatchNorm(np.ones(3), np.zeros(3))
    assert list(blocks.params_of(layer)) == ["gamma", "beta"]
    assert blocks.grads_of(layer) == {"gamma": None, "beta": None}
    state = blocks.state_of(layer)  # created as the book's first forward would
    assert state["running_mean"] is layer.running_mean
    np.testing.assert_array_equal(layer.running_var, np.zeros(3))
    assert blocks.takes_train_flg(layer) and not blocks.takes_train_flg(BookRelu())
    assert blocks.params_of(BookRelu()) == {} and blocks.state_of(BookRelu()) == {}
    layer.running_mean = [0.0, 0.0, 0.0]
    with pytest.raises(TypeError, match="BookBatchNorm.running_mean is a list"):
        blocks.state_of(layer)


def _block_gradcheck(block, x, seed=0):
    """Relative errors of the block's backward (input and every parameter) against
    central differences of ``sum(forward(x) * dout)`` in training mode."""
    dout = np.random.default_rng(seed).standard_normal(block.forward(x, True).shape)

    def loss():
        return float(np.sum(block.forward(x, True) * dout))

    dx = block.backward(dout)
    grads = {"x": (dx, x), **{name: (block.named_grads()[name].copy(), param)
                             for name, param in block.named_params().items()}}
    errors = {}
    for name, (analytic, array) in grads.items():
        numeric = numeric_grad(loss, array)
        scale = max(np.linalg.norm(analytic) + np.linalg.norm(numeric), 1e-4)
        errors[name] = float(np.linalg.norm(analytic - numeric) / scale)
    return errors


@pytest.mark.parametrize("cin, cout, stride", [(2, 2, 1), (2, 3, 2), (3, 2, 1)])
def test_residual_block_gradients(backend, cin, cout, stride):
    block = ResidualBlock(cin, cout, stride, seed=1)
    rng = np.random.default_rng(2)
    for param in block.named_params().values():  # off the initial ones/zeros
        param += rng.normal(0, 0.2, param.shape)
    x = rng.standard_normal((3, cin, 5, 4))
    out = block.forward(x)
    assert out.shape == (3, cout, (5 - 1) // stride + 1, (4 - 1) // stride + 1)
    errors = _block_gradcheck(block, x)
    assert max(errors.values()) < 1e-6, errors
    projection = ["shortcut_conv.W", "shortcut_bn.gamma", "shortcut_bn.beta"]
    assert list(block.named_params()) == [
        "conv1.W", "bn1.gamma", "bn1.beta", "conv2.W", "bn2.gamma", "bn2.beta",
        *(projection if (cin, stride) != (cout, 1) else [])]


def test_residual_block_computes_torchvisions_basic_block(backend):
    # conv3x3 - per-channel batch norm - relu - conv3x3 - batch norm, plus the
    # 1x1-projected input, then relu, written out with im2col-free numpy.
    block = ResidualBlock(2, 3, 2, seed=3)
    rng = np.random.default_rng(4)
    for param in block.named_params().values():
        param += rng.normal(0, 0.2, param.shape)
    x = rng.standard_normal((4, 2, 6, 5))
    layers = block.children

    def conv(img, W, stride, pad):
        img = np.pad(img, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
        fn, _, fh, fw = W.shape
        oh, ow = (img.shape[2] - fh) // stride + 1, (img.shape[3] - fw) // stride + 1
        out = np.zeros((img.shape[0], fn, oh, ow))
        for i in range(fh):
            for j in range(fw):
                window = img[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
                out += np.einsum("nchw,fc->nfhw", window, W[:, :, i, j])
        return out

    def norm(h, bn):
        mean = h.mean(axis=(0, 2, 3), keepdims=True)
        var = h.var(axis=(0, 2, 3), keepdims=True)
        scale = (h - mean) / np.sqrt(var + bn.eps)
        return bn.gamma[None, :, None, None] * scale + bn.beta[None, :, None, None]

    h = np.maximum(norm(conv(x, layers["conv1"].W, 2, 1), layers["bn1"]), 0)
    h = norm(conv(h, layers["conv2"].W, 1, 1), layers["bn2"])
    shortcut = norm(conv(x, layers["shortcut_conv"].W, 2, 0), layers["shortcut_bn"])
    np.testing.assert_allclose(block.forward(x), np.maximum(h + shortcut, 0), rtol=1e-10,
                               atol=1e-12)
    mean = conv(x, layers["conv1"].W, 2, 1).mean(axis=(0, 2, 3))
    np.testing.assert_allclose(layers["bn1"].running_mean, 0.1 * mean, rtol=1e-10)


def test_residual_blocks_in_a_network_train_and_reload(backend, tmp_path):
    class TinyResNet(Network):
        def __init__(self, seed, dtype=np.float64):
            super().__init__(dtype)
            self.input_dim = SHAPE
            self.layers = OrderedDict()
            self._add_layer("block1", ResidualBlock(2, 2, dtype=dtype, seed=seed))
            self._add_layer("block2", ResidualBlock(2, 4, 2, dtype=dtype, seed=seed + 1))
            rng = np.random.default_rng(seed)
            self._add_layer("affine", Affine(rng.normal(0, 0.3, (16, CLASSES)).astype(dtype),
                                             np.zeros(CLASSES, dtype)))
            self._bind_params()

    net = TinyResNet(seed=0)
    assert len(net.params) == 6 + 9 + 2 and len(net.buffers) == 4 + 6
    assert "block2.shortcut_bn.running_var" in net.buffers
    x, t = _data(n=8)
    trainer = Trainer(net, x, t, x, t, epochs=1, mini_batch_size=8, optimizer="Adam",
                      verbose=False, seed=0)
    trainer.train_step()
    net.save_params(tmp_path / "resnet.npz")
    loaded = TinyResNet(seed=5)
    loaded.load_params(tmp_path / "resnet.npz")
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    net32 = TinyResNet(seed=0, dtype=np.float32)
    assert net32.predict(x).dtype == np.float32
    assert all(p.dtype == np.float32 for p in net32.gradient(x, t).values())


def test_spatial_batch_norm_checks_its_input(backend):
    norm = SpatialBatchNormalization(np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"SpatialBatchNormalization: expected input with 3 "
                                         r"channels \(N, 3, H, W\), got shape \(2, 4, 5, 5\)"):
        norm.forward(np.ones((2, 4, 5, 5)))
    with pytest.raises(ValueError, match=r"SpatialBatchNormalization: expected input of shape"):
        norm.forward(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match="SpatialBatchNormalization: backward"):
        norm.backward(np.ones((2, 3, 5, 5)))
    out = norm.forward(np.random.default_rng(0).standard_normal((2, 3, 4, 5)))
    with pytest.raises(ValueError, match=r"expected dout \(the forward output's shape\) "
                                         r"of shape \(2, 3, 4, 5\)"):
        norm.backward(np.ones((2, 3, 5, 4)))
    assert norm.backward(np.ones_like(out)).shape == out.shape


def _per_channel_reference(x, gamma, beta, dout, eps):
    """torch's BatchNorm2d in training mode, in float64: (out, dx, dgamma, dbeta, mean, var)."""
    x, dout = x.astype(np.float64), dout.astype(np.float64)
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    xn = (x - mean) / np.sqrt(var + eps)
    g = gamma.astype(np.float64)[None, :, None, None]
    out = g * xn + beta.astype(np.float64)[None, :, None, None]
    dbeta = dout.sum(axis=(0, 2, 3))
    dgamma = (dout * xn).sum(axis=(0, 2, 3))
    dx = g / np.sqrt(var + eps) * (dout - dout.mean(axis=(0, 2, 3), keepdims=True)
                                   - xn * (dout * xn).mean(axis=(0, 2, 3), keepdims=True))
    return out, dx, dgamma, dbeta, mean.ravel(), var.ravel()


# batch 1, odd sizes, one channel, and one large enough for numba's parallel path
@pytest.mark.parametrize("shape", [(1, 3, 6, 5), (3, 4, 5, 7), (5, 1, 3, 3), (8, 16, 14, 14)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_spatial_batch_norm_normalises_each_channel(backend, shape, dtype):
    rng = np.random.default_rng(5)
    c = shape[1]
    gamma = rng.uniform(0.5, 1.5, c).astype(dtype)
    beta = rng.uniform(-0.5, 0.5, c).astype(dtype)
    norm = SpatialBatchNormalization(gamma, beta)
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == np.float64 else {"rtol": 1e-4, "atol": 2e-5}
    running_mean, running_var = np.zeros(c), np.zeros(c)
    for _ in range(2):  # the running statistics move as momentum * running + 0.1 * batch
        x = (2 * rng.standard_normal(shape) + rng.uniform(-1, 1, (1, c, 1, 1))).astype(dtype)
        dout = rng.standard_normal(shape).astype(dtype)
        out = norm.forward(x)
        dx = norm.backward(dout)
        ref_out, ref_dx, ref_dgamma, ref_dbeta, mean, var = _per_channel_reference(
            x, gamma, beta, dout, norm.eps)
        running_mean = 0.9 * running_mean + 0.1 * mean
        running_var = 0.9 * running_var + 0.1 * var
        for name, got, want in [("out", out, ref_out), ("dx", dx, ref_dx),
                                ("dgamma", norm.dgamma, ref_dgamma),
                                ("dbeta", norm.dbeta, ref_dbeta),
                                ("running_mean", norm.running_mean, running_mean),
                                ("running_var", norm.running_var, running_var)]:
            assert got.dtype == dtype, name
            scale = max(float(np.max(np.abs(want))), 1.0)
            np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"] * scale,
                                       err_msg=name)
    per_channel = (slice(None), None, None)  # (C,) against (N, C, H, W)
    xn = (x - running_mean[per_channel]) / np.sqrt(running_var + norm.eps)[per_channel]
    ref = gamma[per_channel] * xn + beta[per_channel]
    np.testing.assert_allclose(norm.forward(x, train_flg=False), ref, **tol)


def test_spatial_batch_norm_gradients(backend):
    rng = np.random.default_rng(6)
    norm = SpatialBatchNormalization(rng.uniform(0.5, 1.5, 3), rng.uniform(-0.5, 0.5, 3))
    x = rng.standard_normal((2, 3, 4, 5)) + rng.uniform(-1, 1, (1, 3, 1, 1))
    errors = layer_gradcheck(norm, x, params=("gamma", "beta"))
    assert max(errors.values()) < 1e-7, errors
