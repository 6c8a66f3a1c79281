"""ResNet and its residual block: gradients, training, files, and PyTorch's basic block."""
import numpy as np
import pytest

from fastzero.layers import ResidualBlock
from fastzero.nets import ResNet
from fastzero.trainer import Trainer


def _tiny(dtype=np.float64, seed=0):
    return ResNet(input_dim=(1, 8, 8), channels=(2, 3), blocks=1, output_size=4, dtype=dtype,
                  seed=seed)


def _data(n=6, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 8, 8)), rng.integers(0, 4, n)


def test_gradient_matches_numerical_differentiation(backend):
    network = _tiny()
    x, t = _data()
    numerical = network.numerical_gradient(x, t)
    analytic = network.gradient(x, t)
    assert set(analytic) == set(network.params)
    for name in network.params:
        np.testing.assert_allclose(analytic[name], numerical[name], rtol=1e-4, atol=1e-6,
                                   err_msg=name)


def test_trains_saves_and_loads(backend, tmp_path):
    network = _tiny(seed=3)
    x, t = _data(40, seed=2)
    trainer = Trainer(network, x, t, x, t, epochs=3, mini_batch_size=10, optimizer="Adam",
                      optimizer_param={"lr": 0.01}, verbose=False, seed=0)
    first = network.loss(x, t, train_flg=True)
    trainer.train()
    assert network.loss(x, t, train_flg=True) < first
    path = tmp_path / "resnet.npz"
    network.save_params(path)
    other = _tiny(seed=99)
    other.load_params(path)
    np.testing.assert_array_equal(other.predict(x), network.predict(x))
    assert set(other.buffers) == set(network.buffers) and network.buffers


def test_float32_end_to_end(backend):
    network = _tiny(np.float32)
    x, t = _data()
    grads = network.gradient(x.astype(np.float32), t)
    assert network.predict(x.astype(np.float32)).dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())


def test_shapes_of_the_mnist_network():
    network = ResNet(seed=0)
    assert network.predict(np.zeros((2, 1, 28, 28))).shape == (2, 10)
    assert network.params["W2"].shape == (64 * 3 * 3, 10)
    with pytest.raises(ValueError, match="too small"):
        ResNet(input_dim=(1, 4, 4), channels=(2, 3, 4, 5))


def test_basic_block_equals_pytorch_forward_and_backward():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    rng = np.random.default_rng(0)
    for cin, cout, stride in [(3, 3, 1), (3, 5, 2)]:
        block = ResidualBlock(cin, cout, stride, seed=1)
        named = dict(block.named_params())
        for name, array in named.items():
            if name.endswith(("gamma", "beta")):
                array[...] = rng.uniform(0.5, 1.5, array.shape) if name.endswith("gamma") \
                    else rng.uniform(-0.5, 0.5, array.shape)
        eps = float(block.children["bn1"].eps)

        def bn():
            return nn.BatchNorm2d(cout, eps=eps).double()

        conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False).double()
        conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False).double()
        bn1, bn2 = bn(), bn()
        pairs = [(conv1.weight, "conv1.W"), (conv2.weight, "conv2.W"), (bn1.weight, "bn1.gamma"),
                 (bn1.bias, "bn1.beta"), (bn2.weight, "bn2.gamma"), (bn2.bias, "bn2.beta")]
        shortcut = None
        if block.projection:
            sconv = nn.Conv2d(cin, cout, 1, stride, 0, bias=False).double()
            sbn = bn()
            pairs += [(sconv.weight, "shortcut_conv.W"), (sbn.weight, "shortcut_bn.gamma"),
                      (sbn.bias, "shortcut_bn.beta")]
            shortcut = nn.Sequential(sconv, sbn)
        with torch.no_grad():
            for tensor, name in pairs:
                tensor.copy_(torch.from_numpy(named[name]))
        x = rng.standard_normal((4, cin, 7, 7))
        dout = rng.standard_normal(block.forward(x, True).shape)
        out = block.forward(x, True)
        dx = block.backward(dout)

        xt = torch.from_numpy(x).requires_grad_(True)
        main = bn2(conv2(torch.relu(bn1(conv1(xt)))))
        yt = torch.relu(main + (shortcut(xt) if shortcut is not None else xt))
        yt.backward(torch.from_numpy(dout))
        np.testing.assert_allclose(out, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-10)
        grads = dict(block.named_grads())
        for tensor, name in pairs:
            np.testing.assert_allclose(grads[name], tensor.grad.numpy(), rtol=1e-9, atol=1e-10,
                                       err_msg=name)
