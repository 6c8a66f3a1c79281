"""Half-precision inference: ``network.astype(np.float16)`` stores parameters and the
activations between layers in float16 and computes every layer in float32."""
import numpy as np
import pytest

from fastzero import blocks
from fastzero.nets import DeepConvNet, MultiLayerNetExtend, ResNet, SimpleConvNet, TwoLayerNet


def _resnet():
    network = ResNet(input_dim=(1, 12, 12), channels=(4, 6), blocks=1, output_size=5, seed=2)
    x = np.random.default_rng(5).random((16, 1, 12, 12))
    for _ in range(30):  # running statistics of real activations, not the initial zeros/ones
        network.predict(x, train_flg=True)
    return network


NETWORKS = {
    "TwoLayerNet": (lambda: TwoLayerNet(20, 12, 5, weight_init_std=0.3, seed=0), (20,)),
    "MultiLayerNetExtend": (lambda: _trained_bn(MultiLayerNetExtend(
        20, [16, 12], 5, use_dropout=True, use_batchnorm=True, seed=1)), (20,)),
    "SimpleConvNet": (lambda: SimpleConvNet(
        (1, 10, 10), {"filter_num": 6, "filter_size": 3, "pad": 0, "stride": 1}, 16, 5,
        weight_init_std=0.3, seed=3), (1, 10, 10)),
    "DeepConvNet": (lambda: DeepConvNet(seed=4), (1, 28, 28)),
    "ResNet": (_resnet, (1, 12, 12)),
}


def _trained_bn(network):
    x = np.random.default_rng(6).standard_normal((32, 20))
    for _ in range(30):
        network.predict(x, train_flg=True)
    return network


def _inputs(shape, n=8, seed=7):
    return np.random.default_rng(seed).random((n, *shape))


def _all_layers(layers):
    for layer in layers:
        yield layer
        if isinstance(layer, blocks.Block):
            yield from _all_layers(layer.children.values())


def _emulated(network32, x):
    """float32 network, every activation between layers rounded to float16 by hand."""
    layers = network32._layer_list()
    out = x.astype(np.float16).astype(np.float32)
    for layer in layers[:-1]:
        out = blocks.forward(layer, out, False).astype(np.float16).astype(np.float32)
    return blocks.forward(layers[-1], out, False)


@pytest.mark.parametrize("name", NETWORKS)
def test_float16_predicts_as_float32_on_rounded_weights(backend, name):
    build, shape = NETWORKS[name]
    network = build()
    half = network.astype(np.float16)
    rounded = half.astype(np.float32)  # float16-rounded weights, float32 everything else
    x = _inputs(shape)
    scores = half.predict(x)
    assert scores.dtype == np.float32
    # the same float32 arithmetic on the same float16 values: equal up to summation order
    np.testing.assert_allclose(scores, _emulated(rounded, x), rtol=1e-5, atol=1e-5)
    # against activations kept in float32 the rounding of every stored activation shows
    expected = rounded.predict(x.astype(np.float32))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(scores, expected, rtol=0, atol=2e-2 * scale)
    np.testing.assert_allclose(scores, network.predict(x), rtol=0, atol=3e-2 * scale)


@pytest.mark.parametrize("name", NETWORKS)
def test_parameters_are_stored_in_float16_and_shared_with_the_layers(name):
    build, _ = NETWORKS[name]
    network = build()
    before = {k: v.copy() for k, v in network.state().items()}
    half = network.astype(np.float16)
    assert half.dtype == np.float16
    assert {a.dtype for a in half.params.values()} == {np.dtype(np.float16)}
    assert all(a.dtype == np.float32 for a in half.buffers.values())
    held = {id(a) for layer in _all_layers(half._layer_list())
            for a in blocks.params_of(layer).values()}
    assert {id(a) for a in half.params.values()} <= held
    for key, value in network.state().items():  # the original is untouched
        assert value.dtype == np.float64
        np.testing.assert_array_equal(value, before[key])
    for key, value in half.params.items():
        np.testing.assert_array_equal(value, before[key].astype(np.float16))
    assert sum(a.nbytes for a in half.params.values()) * 4 == sum(
        a.nbytes for a in network.params.values())


def test_argmax_agrees_wherever_float32_is_decided(backend):
    """Every sample whose float32 top-two margin exceeds the float16 error agrees."""
    network = DeepConvNet(seed=8)
    x = _inputs((1, 28, 28), n=200, seed=9)
    x[:, :, 6:22, 6:22] += np.random.default_rng(10).random((200, 1, 16, 16))  # varied scores
    reference = network.astype(np.float32).predict(x.astype(np.float32))
    scores = network.astype(np.float16).predict(x)
    top2 = np.sort(reference, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > 2 * np.abs(scores - reference).max()
    assert decided.mean() > 0.5
    agree = scores.argmax(axis=1) == reference.argmax(axis=1)
    assert agree[decided].all()
    assert agree.mean() >= 0.95


def test_training_in_float16_is_refused():
    network, _ = NETWORKS["SimpleConvNet"]
    half = network().astype(np.float16)
    x, t = _inputs((1, 10, 10), n=4), np.arange(4)
    with pytest.raises(TypeError, match="float16 for inference only"):
        half.gradient(x, t)
    with pytest.raises(TypeError, match="train_flg=True"):
        half.predict(x, train_flg=True)
    with pytest.raises(TypeError, match="float16 for inference only"):
        half.numerical_gradient(x, t)
    assert np.isfinite(half.loss(x, t))  # inference-mode loss is fine
    trainable = half.astype(np.float32)
    assert set(trainable.gradient(x, t)) == set(trainable.params)


def test_astype_refuses_other_dtypes():
    network = NETWORKS["TwoLayerNet"][0]()
    for dtype in (np.int8, np.complex64, np.float128 if hasattr(np, "float128") else object):
        with pytest.raises(TypeError):
            network.astype(dtype)


@pytest.mark.parametrize("suffix", [".npz", ".pkl"])
def test_save_and_load_in_float16(tmp_path, suffix):
    network = _resnet()
    half = network.astype(np.float16)
    x = _inputs((1, 12, 12))
    path = tmp_path / f"half{suffix}"
    half.save_params(path)
    # a float16 file loads into a float32 network: the same float16 values
    other = ResNet(input_dim=(1, 12, 12), channels=(4, 6), blocks=1, output_size=5,
                   dtype=np.float32, seed=99)
    other.load_params(path)
    for key, value in half.state().items():
        np.testing.assert_array_equal(other.state()[key], value.astype(np.float32))
    # a float64 file loads into a float16 network: rounded, kept in float16, seen by the layers
    path64 = tmp_path / f"full{suffix}"
    network.save_params(path64)
    target = ResNet(input_dim=(1, 12, 12), channels=(4, 6), blocks=1, output_size=5,
                    seed=98).astype(np.float16)
    target.load_params(path64)
    assert {a.dtype for a in target.params.values()} == {np.dtype(np.float16)}
    np.testing.assert_array_equal(target.predict(x), half.predict(x))
