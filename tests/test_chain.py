"""A small CNN built from the layers trains: Convolution -> Relu -> Pooling -> Affine -> SoftmaxWithLoss."""
import numpy as np

from fastzero.layers import Affine, Convolution, Pooling, Relu, SoftmaxWithLoss
from fastzero.optimizer import Adam


def bars(rng, n):
    """8x8 one-channel images of a horizontal bar, a vertical bar or a diagonal, with noise."""
    t = rng.integers(0, 3, size=n)
    x = 0.3 * rng.standard_normal((n, 1, 8, 8))
    pos = rng.integers(1, 7, size=n)
    for i in range(n):
        if t[i] == 0:
            x[i, 0, pos[i], :] += 1.0
        elif t[i] == 1:
            x[i, 0, :, pos[i]] += 1.0
        else:
            x[i, 0] += np.eye(8)
    return x, t


def test_small_convnet_loss_falls(backend):
    rng = np.random.default_rng(0)
    x, t = bars(rng, 60)
    params = {
        "W1": 0.3 * rng.standard_normal((4, 1, 3, 3)), "b1": np.zeros(4),
        "W2": 0.1 * rng.standard_normal((4 * 4 * 4, 3)), "b2": np.zeros(3),
    }
    layers = [Convolution(params["W1"], params["b1"], stride=1, pad=1), Relu(),
              Pooling(2, 2, stride=2), Affine(params["W2"], params["b2"])]
    last = SoftmaxWithLoss()
    optimizer = Adam(lr=0.02)

    def step():
        h = x
        for layer in layers:
            h = layer.forward(h)
        loss = last.forward(h, t)
        dout = last.backward()
        for layer in reversed(layers):
            dout = layer.backward(dout)
        conv, affine = layers[0], layers[3]
        optimizer.update(params, {"W1": conv.dW, "b1": conv.db, "W2": affine.dW, "b2": affine.db})
        return loss

    losses = [step() for _ in range(60)]
    accuracy = np.mean(np.argmax(last.y, axis=1) == t)
    assert losses[0] > 0.9  # ~log(3) at the start
    assert losses[-1] < 0.3 * losses[0], losses[::10]
    assert accuracy > 0.9
