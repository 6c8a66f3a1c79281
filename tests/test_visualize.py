"""fastzero.visualize: Grad-CAM against numerical differentiation (and PyTorch
autograd when torch is installed), misclassified digits, and the figures."""
import numpy as np
import pytest

import fastzero
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
                      ("gradcam", grad_cam_figure(network, x[:4]))]:
        path = tmp_path / f"{name}.png"
        fig.savefig(path)
        assert path.stat().st_size > 1000


def test_grad_cam_through_spatial_batch_norm_and_the_error_for_blocks(backend):
    """A top-level per-channel batch norm (ResNet's stem) is differentiated in
    inference mode; a residual block after the chosen layer is refused by name."""
    from fastzero.nets import ResNet

    network = ResNet(input_dim=(1, 8, 8), channels=(2, 3), output_size=4, seed=0)
    for name, buffer in network.buffers.items():  # statistics unlike the initial 0 and 1
        low = 0.5 if name.endswith("var") else -1.5  # a negative mean keeps units active
        buffer[...] = np.random.default_rng(len(name)).uniform(low, low + 1, buffer.shape)
    x = _images(2, size=8)
    with pytest.raises(ValueError, match="cannot differentiate through the block ResidualBlock"):
        grad_cam(network, x, layer="Conv1")
    # the stem alone: Conv1 -> BatchNorm1 -> Relu1 -> block ... ; look at the last block's
    # input by cutting the network after the stem
    network.layers = dict(list(network.layers.items())[:3])
    network.layers["Sum"] = _SumLayer()
    maps = grad_cam(network, x, target=[0, 1], layer="Conv1")
    with fastzero.use_backend("numpy"):
        expected = _numerical_cam(network, x, [0, 1], index=0)
    np.testing.assert_allclose(maps, expected, rtol=1e-6, atol=1e-9)
    assert maps.max() > 0.1


class _SumLayer:
    """(N, C, H, W) -> (N, 2): two scores, the sums of channels 0 and 1 (a test head)."""

    def forward(self, x):
        self.shape = x.shape
        return x[:, :2].sum(axis=(2, 3))

    def backward(self, dout):
        dx = np.zeros(self.shape)
        dx[:, :2] = dout[:, :, None, None]
        return dx
