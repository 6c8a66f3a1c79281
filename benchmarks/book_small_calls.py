"""Small calls, fastzero against the book's own code in the same process.

    python benchmarks/book_small_calls.py /path/to/deep-learning-from-scratch [--threads N]
        [--batches 1 3 100] [--numerical] [--timer wall|thread]

The book's repository (a checkout of its code, never part of fastzero) is
imported from the given path. Every layer's forward plus backward and every
network's ``loss`` and ``gradient`` run at each batch size, the book's and
fastzero's (default backend) interleaved in rounds; each row prints both
medians (wall clock, microseconds per call) and fastzero's time over the
book's (below 1: fastzero is faster). ``--numerical`` adds
``TwoLayerNet(784, 50, 10).numerical_gradient`` on a batch of 3 (seconds;
what the book's ``ch05/gradient_check.py`` does). ``--timer thread`` measures
the calling thread's CPU time instead (``time.thread_time``): steadier on a
shared machine, but meaningful only with ``--threads 1``. Without a path it
says so and exits 0. asv collects nothing here (no ``time_``/``track_``
names); ``bench_book.py`` tracks the same ratios.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np


#: The layers and networks compared, by the names the table prints.
LAYERS = ("Relu", "Sigmoid", "Affine 784x50", "SoftmaxWithLoss", "Dropout", "BatchNormalization",
          "Convolution 30x1x5x5", "Pooling 2x2/2")
NETS = ("TwoLayerNet(784, 50, 10)", "MultiLayerNet(784, [100]*3, 10)",
        "MultiLayerNetExtend bn+dropout", "SimpleConvNet", "DeepConvNet")
CASES = (*LAYERS, *(f"{net}.{what}" for net in NETS for what in ("loss", "gradient")))
TIMERS = {"wall": time.perf_counter, "thread": time.thread_time}


def _seconds(call: Callable[[], Any], number: int, timer: Callable[[], float]) -> float:
    start = timer()
    for _ in range(number):
        call()
    return (timer() - start) / number


def compare(ours: Callable[[], Any], book: Callable[[], Any], rounds: int = 7,
            sample: float = 0.02, timer: Callable[[], float] = time.perf_counter
            ) -> tuple[float, float]:
    """Median seconds per call of ``ours`` and ``book``, sampled alternately."""
    ours(), book()  # warm: compile, allocate
    once = max(_seconds(ours, 1, timer), _seconds(book, 1, timer), 1e-7)
    number = max(1, int(sample / once))
    a, b = [], []
    for _ in range(rounds):
        a.append(_seconds(ours, number, timer))
        b.append(_seconds(book, number, timer))
    return statistics.median(a), statistics.median(b)


def import_book(path: str | Path) -> Any:
    """The book's ``common.layers``, imported from its checkout at ``path``; ValueError
    if ``path`` is not one."""
    if not (Path(path) / "common" / "layers.py").exists():
        raise ValueError(f"not a checkout of the book's repository (no common/layers.py): {path}")
    root = str(Path(path).resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    import common.layers as book_layers

    return book_layers


def cases(book_layers: Any, n: int) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """``(name, fastzero call, book call)`` for every name in :data:`CASES` at batch ``n``."""
    import fastzero.layers as fz_layers

    rng = np.random.default_rng(n)
    rows = _layer_cases(book_layers, fz_layers, n, rng) + _net_cases(n, rng)
    assert [name for name, _, _ in rows] == list(CASES)
    return rows


def _layer_cases(book: Any, fz: Any, n: int, rng: np.random.Generator):
    """(name, make) pairs; ``make(layers_module)`` returns a forward+backward callable."""

    def randn(*shape):
        return rng.standard_normal(shape)

    x_img, x_flat = randn(n, 1, 28, 28), randn(n, 784)
    h, scores = randn(n, 100), randn(n, 10)
    labels = rng.integers(0, 10, n)
    W_conv, b_conv = randn(30, 1, 5, 5) * 0.01, np.zeros(30)
    W_aff, b_aff = randn(784, 50) * 0.01, np.zeros(50)
    conv_out = randn(n, 30, 24, 24)

    def fwd_bwd(layer, *args):
        def run():
            out = layer.forward(*args)
            return layer.backward(np.ones_like(out) if isinstance(out, np.ndarray) else 1)
        return run

    def cases(m):
        return {
            "Relu": fwd_bwd(m.Relu(), h),
            "Sigmoid": fwd_bwd(m.Sigmoid(), h),
            "Affine 784x50": fwd_bwd(m.Affine(W_aff, b_aff), x_flat),
            "SoftmaxWithLoss": fwd_bwd(m.SoftmaxWithLoss(), scores, labels),
            "Dropout": fwd_bwd(m.Dropout(0.5), h),
            "BatchNormalization": fwd_bwd(m.BatchNormalization(np.ones(100), np.zeros(100)), h),
            "Convolution 30x1x5x5": fwd_bwd(m.Convolution(W_conv, b_conv), x_img),
            "Pooling 2x2/2": fwd_bwd(m.Pooling(2, 2, stride=2), conv_out),
        }

    ours, theirs = cases(fz), cases(book)
    return [(name, ours[name], theirs[name]) for name in ours]


def _net_cases(n: int, rng: np.random.Generator):
    import fastzero.nets as fzn
    from ch05.two_layer_net import TwoLayerNet
    from ch07.simple_convnet import SimpleConvNet
    from ch08.deep_convnet import DeepConvNet
    from common.multi_layer_net import MultiLayerNet
    from common.multi_layer_net_extend import MultiLayerNetExtend

    flat, img = rng.random((n, 784)), rng.random((n, 1, 28, 28))
    t = rng.integers(0, 10, n)
    builders = {
        "TwoLayerNet(784, 50, 10)": (lambda m: m(784, 50, 10), TwoLayerNet, fzn.TwoLayerNet, flat),
        "MultiLayerNet(784, [100]*3, 10)": (lambda m: m(784, [100] * 3, 10), MultiLayerNet,
                                            fzn.MultiLayerNet, flat),
        "MultiLayerNetExtend bn+dropout": (
            lambda m: m(784, [100] * 3, 10, use_dropout=True, use_batchnorm=True),
            MultiLayerNetExtend, fzn.MultiLayerNetExtend, flat),
        "SimpleConvNet": (lambda m: m(), SimpleConvNet, fzn.SimpleConvNet, img),
        "DeepConvNet": (lambda m: m(), DeepConvNet, fzn.DeepConvNet, img),
    }
    rows = []
    for name, (build, book_cls, fz_cls, x) in builders.items():
        np.random.seed(0)
        book_net, fz_net = build(book_cls), build(fz_cls)
        for what in ("loss", "gradient"):
            rows.append((f"{name}.{what}",
                         (lambda net=fz_net, w=what, x=x: getattr(net, w)(x, t)),
                         (lambda net=book_net, w=what, x=x: getattr(net, w)(x, t))))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("book", nargs="?", help="path of the book's repository checkout")
    parser.add_argument("--threads", type=int, help="fastzero.set_num_threads (default: all)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 3, 100])
    parser.add_argument("--numerical", action="store_true",
                        help="also TwoLayerNet.numerical_gradient on a batch of 3 (slow)")
    parser.add_argument("--timer", choices=list(TIMERS), default="wall",
                        help="wall clock (default) or the calling thread's CPU time")
    args = parser.parse_args(argv)
    try:
        book_layers = import_book(args.book or "")
    except ValueError:
        print("skipped: give the path of the book's repository (it has common/layers.py)")
        return 0

    import fastzero

    if args.threads:
        fastzero.set_num_threads(args.threads)
    timer = TIMERS[args.timer]
    print(f"fastzero backend {fastzero.get_backend()}, {fastzero.get_num_threads()} threads, "
          f"{args.timer} time")
    print(f"{'case':44s} {'batch':>5s} {'fastzero us':>12s} {'book us':>10s} {'ratio':>6s}")
    for n in args.batches:
        for name, ours, theirs in cases(book_layers, n):
            a, b = compare(ours, theirs, timer=timer)
            print(f"{name:44s} {n:5d} {a * 1e6:12.1f} {b * 1e6:10.1f} {a / b:6.2f}", flush=True)
    if args.numerical:
        import fastzero.nets as fzn
        from ch05.two_layer_net import TwoLayerNet

        rng = np.random.default_rng(3)
        x, t = rng.random((3, 784)), rng.integers(0, 10, 3)
        np.random.seed(0)
        book_net, fz_net = TwoLayerNet(784, 50, 10), fzn.TwoLayerNet(784, 50, 10)
        a, b = compare(lambda: fz_net.numerical_gradient(x, t),
                       lambda: book_net.numerical_gradient(x, t), rounds=2, sample=0, timer=timer)
        print(f"{'TwoLayerNet.numerical_gradient (s)':44s} {3:5d} {a:12.2f} {b:10.2f} {a / b:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
