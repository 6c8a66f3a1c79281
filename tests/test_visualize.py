"""fastzero.visualize: Grad-CAM against numerical differentiation (and PyTorch
autograd when torch is installed), misclassified digits, and the figures."""
import numpy as np
import pytest

import fastzero
from fastzero import blocks
from fastzero.gradient import numerical_gradient
from fastzero.layers import BatchNormalization, Dropout
from fastzero.nets import DeepConvNet, SimpleConvNet
from fastzero.visualize import _layers, _resize, grad_cam, misclassified


def _simple(seed=0):
    return SimpleConvNet(input_dim=(1, 12, 12),
                         conv_param={"filter_num": 6, "filter_size": 3, "pad": 1, "stride": 1},
                         hidden_size=20, output_size=5, weight_init_std=0.3, seed=seed)


def _images(n, size=12, seed=1):
    return np.random.default_rng(seed).random((n, 1, size, size))


def _numerical_cam(network, x, target, index):
    """Grad-CAM with d score / d A by central differences through the later layers."""
    layers = [obj for _, obj in _layers(network)]

    def run(obj, a):
        return obj.forward(a, False) if isinstance(obj, (Dropout, BatchNormalization)) else obj.forward(a)

    a = x.copy()
    for obj in layers[:index + 1]:
        a = run(obj, a)
    a = a.copy()
    maps = []
    for i in range(len(x)):
        def score(_):
            out = a[i:i + 1]
            for obj in layers[index + 1:]:
                out = run(obj, out)
            return float(out[0, target[i]])

        activation = a[i:i + 1]
        grad = numerical_gradient(score, activation)
        weights = grad.mean(axis=(2, 3))
        maps.append(np.maximum(np.einsum("nk,nkhw->nhw", weights, activation), 0))
    return _resize(np.concatenate(maps), x.shape[2:])


def test_grad_cam_of_simple_convnet_matches_numerical_differentiation(backend):
    network, x = _simple(), _images(3)
    maps = grad_cam(network, x, target=[0, 3, 4])
    assert maps.shape == (3, 12, 12) and maps.dtype == np.float64 and maps.min() >= 0
    expected = _numerical_cam(network, x, [0, 3, 4], index=0)
    np.testing.assert_allclose(maps, expected, rtol=1e-6, atol=1e-9)
    assert maps.max() > 0


def test_grad_cam_of_deep_convnet_in_inference_mode(backend):
    """Through dropout (inference: x * (1 - ratio)), pooling and ReLU, to the last convolution."""
    network = DeepConvNet(seed=0)
    x = np.random.default_rng(2).random((2, 1, 28, 28))
    names = [name for name, _ in _layers(network)]
    index = 12  # the last convolution (64 channels, 7x7)
    maps = grad_cam(network, x, target=[1, 7], layer=index)
    with fastzero.use_backend("numpy"):  # the oracle's thousands of small calls
        expected = _numerical_cam(network, x, [1, 7], index=index)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-8)
    # by name, the same layer
    np.testing.assert_array_equal(grad_cam(network, x, target=[1, 7], layer=names[index]), maps)


def test_default_target_is_the_predicted_class_and_default_layer_the_last_convolution(backend):
    network, x = _simple(), _images(4)
    predicted = np.argmax(network.predict(x), axis=1)
    np.testing.assert_array_equal(grad_cam(network, x), grad_cam(network, x, target=predicted, layer=0))


def test_grad_cam_refuses_bad_arguments():
    network, x = _simple(), _images(2)
    with pytest.raises(ValueError, match="no layer named"):
        grad_cam(network, x, layer="Conv9")
    with pytest.raises(ValueError, match="out of range"):
        grad_cam(network, x, layer=40)
    with pytest.raises(ValueError, match=r"not a \(N, K, h, w\) feature map"):
        grad_cam(network, x, layer="Affine1")
    with pytest.raises(ValueError, match="class indices"):
        grad_cam(network, x, target=5)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        grad_cam(network, x[0])


def test_resize_keeps_a_constant_and_aligns_pixel_centres():
    maps = np.full((1, 3, 3), 2.0)
    np.testing.assert_allclose(_resize(maps, (7, 5)), np.full((1, 7, 5), 2.0), rtol=1e-15)
    ramp = np.arange(4.0)[None, None, :].repeat(2, axis=1)  # (1, 2, 4)
    # 4 -> 8 with centres aligned: x_src = (j + 0.5) / 2 - 0.5, clamped to [0, 3]
    expected = np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3)
    np.testing.assert_allclose(_resize(ramp, (2, 8))[0, 0], expected)


def test_misclassified_finds_exactly_the_wrong_ones():
    network, x = _simple(), _images(30)
    predicted = np.argmax(network.predict(x), axis=1)
    t = predicted.copy()
    t[[2, 5, 11]] = (t[[2, 5, 11]] + 1) % 5
    wrong, guesses = misclassified(network, x, t, batch_size=7)
    np.testing.assert_array_equal(wrong, [2, 5, 11])
    np.testing.assert_array_equal(guesses, predicted[[2, 5, 11]])
    onehot = np.eye(5)[t]
    np.testing.assert_array_equal(misclassified(network, x, onehot)[0], wrong)


def test_grad_cam_equals_pytorch_autograd():
    torch = pytest.importorskip("torch")
    nn = torch.nn.functional
    network, x = _simple(), _images(3)
    p = {k: torch.tensor(v, requires_grad=False) for k, v in network.params.items()}
    xt = torch.tensor(x)
    a = nn.conv2d(xt, p["W1"], p["b1"], padding=1).detach().requires_grad_(True)
    h = nn.max_pool2d(torch.relu(a), 2, 2).reshape(3, -1)
    scores = torch.relu(h @ p["W2"] + p["b2"]) @ p["W3"] + p["b3"]
    target = [2, 0, 4]
    scores[torch.arange(3), target].sum().backward()
    weights = a.grad.mean(dim=(2, 3))
    a = a.detach()
    cam = torch.relu((weights[:, :, None, None] * a).sum(dim=1, keepdim=True))
    expected = nn.interpolate(cam, size=(12, 12), mode="bilinear", align_corners=False)[:, 0]
    np.testing.assert_allclose(grad_cam(network, x, target=target), expected.detach().numpy(),
                               rtol=1e-10, atol=1e-12)


def test_figures_draw(tmp_path):
    pytest.importorskip("matplotlib")
    from fastzero.visualize import filters_figure, grad_cam_figure, misclassified_figure

    network, x = _simple(), _images(6)
    t = np.zeros(6, dtype=int)
    for name, fig in [("filters", filters_figure(network.params["W1"], _simple(1).params["W1"],
                                                 titles=["trained", "initial"])),
                      ("misclassified", misclassified_figure(network, x, t)),
                      ("gradcam", grad_cam_figure(network, x[:4])),
                      ("gradcam_rows", grad_cam_figure(_resnet(), _images(3, size=8),
                                                       layer=["Conv1", "block2_1.conv1"]))]:
        path = tmp_path / f"{name}.png"
        fig.savefig(path)
        assert path.stat().st_size > 1000


def _resnet(seed=0):
    """A small ResNet with batch-norm parameters and statistics unlike the initial 0 and 1."""
    from fastzero.nets import ResNet

    network = ResNet(input_dim=(1, 8, 8), channels=(2, 3), output_size=4, seed=seed)
    for name, array in network.state().items():
        if name.endswith(("gamma1", "beta1", "var", "mean", "gamma", "beta")):
            low = (0.5 if name.endswith(("var", "gamma", "gamma1")) else
                   -1.5 if name.endswith("mean") else -0.3)  # a negative mean keeps units active
            array[...] = np.random.default_rng(len(name)).uniform(low, low + 1, array.shape)
    return network


class _Fixed:
    """Stands in for a layer: returns the array ``a`` whatever its input (an oracle's probe)."""

    takes_train_flg = True

    def __init__(self, a):
        self.a = a

    def forward(self, x, train_flg=False):
        return self.a


def _numerical_cam_at(network, x, target, name):
    """Grad-CAM at the layer ``name`` (``"block2_1.conv1"``, or a top-level name) with
    d score / d A by central differences: the network's inference forward with that
    layer's output replaced by the probe A, every other path left as it is."""
    top, *path = name.split(".")
    container, key = network.layers, top
    for child in path:
        container, key = container[key].children, child
    real = container[key]
    captured = {}

    class _Record:
        takes_train_flg = True

        def forward(self, a, train_flg=False):
            captured["a"] = blocks.forward(real, a, train_flg)
            return captured["a"]

    maps = []
    try:
        for i in range(len(x)):
            container[key] = _Record()
            network.predict(x[i:i + 1])
            activation = captured["a"].copy()
            container[key] = _Fixed(activation)
            grad = numerical_gradient(lambda _: float(network.predict(x[i:i + 1])[0, target[i]]),
                                      activation)
            weights = grad.mean(axis=(2, 3))
            maps.append(np.maximum(np.einsum("nk,nkhw->nhw", weights, activation), 0))
    finally:
        container[key] = real
    return _resize(np.concatenate(maps), x.shape[2:])


@pytest.mark.parametrize("layer", ["Conv1", "block1_1", "block1_1.conv1", "block1_1.bn2",
                                   "block2_1.conv2", "block2_1.shortcut_conv"])
def test_grad_cam_through_residual_blocks_matches_numerical_differentiation(backend, layer):
    """Convolutions inside a residual block, a block output and the stem before them,
    differentiated through the blocks in inference mode (batch norm by its running
    statistics) against central differences. (The last block's output is left to the
    PyTorch test: its ReLU zeros tie in the max-pool windows after it, where central
    differences split the gradient among the tied cells.)"""
    network, x = _resnet(), _images(2, size=8)
    maps = grad_cam(network, x, target=[1, 2], layer=layer)
    assert maps.shape == (2, 8, 8) and maps.min() >= 0
    with fastzero.use_backend("numpy"):
        expected = _numerical_cam_at(network, x, [1, 2], layer)
    np.testing.assert_allclose(maps, expected, rtol=1e-6, atol=1e-9)
    assert maps.max() > 0.01
    # the network is left as it was: children restored, in order
    assert list(network.layers["block2_1"].children) == [
        "conv1", "bn1", "relu1", "conv2", "bn2", "shortcut_conv", "shortcut_bn", "relu2"]


def test_grad_cam_default_layer_of_a_resnet_is_its_last_block(backend):
    network, x = _resnet(), _images(3, size=8)
    np.testing.assert_array_equal(grad_cam(network, x), grad_cam(network, x, layer="block2_1"))


def test_grad_cam_refuses_unknown_layers_inside_blocks():
    network, x = _resnet(), _images(1, size=8)
    with pytest.raises(ValueError, match="layers of block2_1: conv1, bn1"):
        grad_cam(network, x, layer="block2_1.conv9")
    with pytest.raises(ValueError, match="layers of Conv1: none"):
        grad_cam(network, x, layer="Conv1.W")


def test_grad_cam_through_residual_blocks_equals_pytorch_autograd():
    torch = pytest.importorskip("torch")
    fn = torch.nn.functional
    network, x = _resnet(seed=3), _images(3, size=8)
    p = {k: torch.from_numpy(v) for k, v in network.state().items()}
    eps = network.layers["BatchNorm1"].eps

    taps = {}

    def keep(name, a):
        a.retain_grad()
        taps[name] = a
        return a

    def block(a, name, stride):
        q = {k[len(name) + 1:]: v for k, v in p.items() if k.startswith(name + ".")}
        h = keep(f"{name}.conv1", fn.conv2d(a, q["conv1.W"], stride=stride, padding=1))
        h = torch.relu(fn.batch_norm(h, q["bn1.running_mean"], q["bn1.running_var"],
                                     q["bn1.gamma"], q["bn1.beta"], training=False, eps=eps))
        h = keep(f"{name}.conv2", fn.conv2d(h, q["conv2.W"], padding=1))
        h = fn.batch_norm(h, q["bn2.running_mean"], q["bn2.running_var"], q["bn2.gamma"],
                          q["bn2.beta"], training=False, eps=eps)
        if "shortcut_conv.W" in q:
            a = keep(f"{name}.shortcut_conv", fn.conv2d(a, q["shortcut_conv.W"], stride=stride))
            a = fn.batch_norm(a, q["shortcut_bn.running_mean"], q["shortcut_bn.running_var"],
                              q["shortcut_bn.gamma"], q["shortcut_bn.beta"], training=False,
                              eps=eps)
        return keep(name, torch.relu(h + a))

    xt = torch.from_numpy(x).requires_grad_(True)  # so that every activation keeps a grad
    a = keep("Conv1", fn.conv2d(xt, p["W1"], p["b1"], padding=1))
    a = torch.relu(fn.batch_norm(
        a, p["BatchNorm1.running_mean"], p["BatchNorm1.running_var"], p["gamma1"], p["beta1"],
        training=False, eps=eps))
    a = block(block(a, "block1_1", 1), "block2_1", 2)
    scores = fn.max_pool2d(a, 2, 2).reshape(3, -1) @ p["W2"] + p["b2"]
    target = [2, 0, 3]
    scores[torch.arange(3), target].sum().backward()
    for name, a in taps.items():
        weights = a.grad.mean(dim=(2, 3))
        cam = torch.relu((weights[:, :, None, None] * a.detach()).sum(dim=1, keepdim=True))
        expected = fn.interpolate(cam, size=(8, 8), mode="bilinear", align_corners=False)[:, 0]
        np.testing.assert_allclose(grad_cam(network, x, target=target, layer=name),
                                   expected.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    assert set(taps) == {"Conv1", "block1_1.conv1", "block1_1.conv2", "block1_1",
                         "block2_1.conv1", "block2_1.conv2", "block2_1.shortcut_conv", "block2_1"}
