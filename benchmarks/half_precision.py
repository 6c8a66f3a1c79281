"""Half-precision inference of the book's pretrained DeepConvNet: accuracy, speed and memory
in float64, float32 and float16 (``network.astype``), as ``ch08/half_float_network.py``.

    python benchmarks/half_precision.py --params /path/to/ch08/deep_convnet_params.pkl \
        --data /path/to/mnist [--rounds 3] [--threads 1 2]

Accuracy on the full test set; speed as the median seconds to predict the 10,000 test
images in batches of 100, the dtypes interleaved round by round in one process (calling-
thread CPU time at 1 thread, wall time otherwise); memory of the parameters, of the
activations stored between layers (batch 100) and the peak that tracemalloc sees during
one batch on the numpy backend (numba's allocations are not traced).
"""
from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np

DTYPES = ("float64", "float32", "float16")


def predict_all(network, x: np.ndarray, batch: int = 100) -> np.ndarray:
    return np.concatenate([network.predict(x[i:i + batch]).argmax(axis=1)
                           for i in range(0, len(x), batch)])


def stored_activations(network, x: np.ndarray) -> tuple[int, int]:
    """Bytes of every activation passed between layers for ``x``: (total, largest)."""
    from fastzero import blocks

    out = np.asarray(x, dtype=network.dtype)
    sizes = [out.nbytes]
    for layer in network._layer_list():
        out = blocks.forward(layer, out, False).astype(network.dtype)
        sizes.append(out.nbytes)
    return sum(sizes), max(sizes)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--params", required=True, help="the book's ch08/deep_convnet_params.pkl")
    p.add_argument("--data", default=None, help="directory of the MNIST IDX files")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()

    import fastzero
    from fastzero.datasets import load_mnist
    from fastzero.nets import DeepConvNet

    (_, _), (x_test, t_test) = load_mnist(flatten=False, data_dir=args.data)
    base = DeepConvNet()
    base.load_params(args.params)
    nets = {name: base.astype(name) for name in DTYPES}

    fastzero.set_backend("numba")
    print("accuracy on the 10,000 test images (batch 100):")
    predictions = {}
    for name, network in nets.items():
        predictions[name] = predict_all(network, x_test)
        print(f"  {name}: {np.mean(predictions[name] == t_test):.4f}")
    for name in DTYPES[1:]:
        changed = int(np.sum(predictions[name] != predictions["float64"]))
        print(f"  {name} predictions differing from float64: {changed}")

    print("memory (batch 100):")
    for name, network in nets.items():
        params = sum(a.nbytes for a in network.params.values())
        total, largest = stored_activations(network, x_test[:100])
        with fastzero.use_backend("numpy"):
            network.predict(x_test[:100])
            tracemalloc.start()
            network.predict(x_test[:100])
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        print(f"  {name}: parameters {params / 1e6:.3f} MB; activations between layers "
              f"{total / 1e6:.2f} MB in all, largest {largest / 1e6:.2f} MB; "
              f"peak during predict (numpy backend) {peak / 1e6:.2f} MB")

    for threads in args.threads:
        fastzero.set_num_threads(threads)
        clock = time.thread_time if threads == 1 else time.perf_counter
        times = {name: [] for name in DTYPES}
        for _ in range(args.rounds):
            for name, network in nets.items():
                start = clock()
                predict_all(network, x_test)
                times[name].append(clock() - start)
        kind = "calling-thread CPU" if threads == 1 else "wall"
        print(f"speed, {threads} thread(s), {kind} seconds for 10,000 images (median of "
              f"{args.rounds}):")
        ref = statistics.median(times["float32"])
        for name in DTYPES:
            median = statistics.median(times[name])
            print(f"  {name}: {median:.3f} s ({median / ref:.2f}x float32)")


if __name__ == "__main__":
    main()
