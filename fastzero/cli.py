"""The ``fastzero`` command line: ``train``, ``evaluate``, ``info`` and ``bench``.

``fastzero train --net simple --epochs 1`` trains the book's SimpleConvNet on
MNIST and writes into ``--out``: ``params.npz`` (the final parameters),
``checkpoint.npz`` (updated every epoch; ``--resume`` continues from it),
``history.json`` (losses, accuracies, timings, the command's settings) and,
when matplotlib is installed, ``curves.png``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import fastzero

#: --net choices -> what they build (see :func:`build_net`).
NETS = {
    "simple": "SimpleConvNet (chapter 7): conv-relu-pool-affine-relu-affine",
    "deep": "DeepConvNet (chapter 8): 6 conv layers, 3 pools, dropout",
    "two_layer": "TwoLayerNet (chapter 5): 784-50-10",
    "multi_layer": "MultiLayerNet (chapter 6): 784-100-100-100-100-10, ReLU, He init",
}
_FLAT_INPUT = {"two_layer", "multi_layer"}


def build_net(name: str, input_shape: tuple[int, ...], dtype: Any, seed: int | None):
    """The book's network ``name`` for samples of ``input_shape`` ((C, H, W) or (D,))."""
    from fastzero import nets

    if name == "simple":
        return nets.SimpleConvNet(input_dim=input_shape, dtype=dtype, seed=seed)
    if name == "deep":
        return nets.DeepConvNet(input_dim=input_shape, dtype=dtype, seed=seed)
    size = int(np.prod(input_shape))
    if name == "two_layer":
        return nets.TwoLayerNet(size, 50, 10, dtype=dtype, seed=seed)
    if name == "multi_layer":
        return nets.MultiLayerNet(size, [100, 100, 100, 100], 10, dtype=dtype, seed=seed)
    raise ValueError(f"unknown network {name!r}; choose one of {', '.join(NETS)}")


def _load_data(args: argparse.Namespace):
    from fastzero.datasets import load_mnist

    (x_train, t_train), (x_test, t_test) = load_mnist(
        normalize=True, flatten=args.net in _FLAT_INPUT, data_dir=args.data_dir
    )
    train_size = getattr(args, "train_size", None)
    return (x_train[:train_size], t_train[:train_size]), (x_test[:args.test_size],
                                                          t_test[:args.test_size])


def _setup_compute(args: argparse.Namespace) -> None:
    fastzero.set_backend(args.backend)
    if args.threads is not None:
        fastzero.set_num_threads(args.threads)


# -- train -----------------------------------------------------------------

def _write_json(path: Path, data: dict) -> None:
    from fastzero.params_io import atomic_write

    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=1).encode())


def _plot_curves(path: Path, trainer) -> bool:
    """Loss per step and accuracies per epoch as a PNG; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from fastzero.params_io import atomic_write

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    steps = np.arange(1, len(trainer.train_loss_list) + 1) / trainer.iter_per_epoch
    ax_loss.plot(steps, trainer.train_loss_list, lw=0.6)
    ax_loss.set(xlabel="epoch", ylabel="training loss", yscale="log")
    epochs = np.arange(1, len(trainer.test_acc_list) + 1)
    ax_acc.plot(epochs, trainer.train_acc_list, "o-", label="train")
    ax_acc.plot(epochs, trainer.test_acc_list, "s-", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy")
    ax_acc.legend()
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return True


def cmd_train(args: argparse.Namespace) -> int:
    from fastzero.trainer import Trainer

    out = Path(args.out)
    checkpoint = out / "checkpoint.npz"
    if args.resume and not checkpoint.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint}")
    if checkpoint.exists() and not (args.resume or args.overwrite):
        raise FileExistsError(
            f"{out} already holds a run ({checkpoint.name}); pass --resume to continue it, "
            "--overwrite to start afresh, or choose another --out"
        )
    _setup_compute(args)
    (x_train, t_train), (x_test, t_test) = _load_data(args)
    net = build_net(args.net, x_train.shape[1:], np.dtype(args.dtype), args.seed)
    optimizer_param = {} if args.lr is None else {"lr": args.lr}
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(net, x_train, t_train, x_test, t_test, epochs=args.epochs,
                      mini_batch_size=args.batch_size, optimizer=args.optimizer,
                      optimizer_param=optimizer_param,
                      evaluate_sample_num_per_epoch=args.eval_samples, verbose=not args.quiet,
                      seed=args.seed, checkpoint=checkpoint,
                      replacement=args.sampling == "book", lr_schedule=args.lr_schedule)
    if args.resume:
        trainer.load_checkpoint(checkpoint)
    if not args.quiet:
        print(f"training {type(net).__name__} ({args.dtype}, backend {args.backend}, "
              f"{fastzero.get_num_threads()} threads) on {len(x_train)} samples, "
              f"{args.epochs} epochs of {trainer.iter_per_epoch} steps")
    start = time.perf_counter()
    test_acc = trainer.train()
    seconds = time.perf_counter() - start

    net.save_params(out / "params.npz")
    _write_json(out / "history.json", {
        "net": args.net,
        "settings": {k: v for k, v in vars(args).items() if k != "func"},
        "iter_per_epoch": trainer.iter_per_epoch,
        "train_loss": trainer.train_loss_list,
        "train_acc": trainer.train_acc_list,
        "test_acc": trainer.test_acc_list,
        "final_test_acc": test_acc,
        "seconds": seconds,
    })
    plotted = _plot_curves(out / "curves.png", trainer)
    print(f"final test accuracy: {test_acc:.4f} ({len(x_test)} samples); "
          f"training took {seconds:.1f} s")
    print(f"wrote {out / 'params.npz'}, {out / 'history.json'}"
          + (f", {out / 'curves.png'}" if plotted else " (install matplotlib for curves.png)"))
    return 0


# -- evaluate --------------------------------------------------------------

def cmd_evaluate(args: argparse.Namespace) -> int:
    _setup_compute(args)
    _, (x_test, t_test) = _load_data(args)
    net = build_net(args.net, x_test.shape[1:], np.dtype(args.dtype), seed=0)
    net.load_params(args.params)
    acc = net.accuracy(x_test, t_test, batch_size=args.batch_size)
    print(f"test accuracy: {acc:.4f} ({len(x_test)} samples, {args.params})")
    return 0


# -- info ------------------------------------------------------------------

def cmd_info(args: argparse.Namespace) -> int:
    import numba

    from fastzero.datasets.mnist import resolve_data_dir, verify_files

    data_dir = resolve_data_dir(args.data_dir)
    rows = [
        ("fastzero", fastzero.__version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("numpy", np.__version__),
        ("numba", numba.__version__),
        ("backend", f"{fastzero.get_backend()} (available: {', '.join(fastzero.available_backends())})"),
        ("threads", f"{fastzero.get_num_threads()} (at most {numba.config.NUMBA_NUM_THREADS})"),
        ("numba cache", numba.config.CACHE_DIR or "next to the sources, in __pycache__ (numba default)"),
        ("data dir", str(data_dir)),
    ]
    rows += [(f"  {name}", status) for name, status in verify_files(data_dir).items()]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


# -- the parser ------------------------------------------------------------

def _add_compute_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", choices=NETS, default="simple",
                   help="; ".join(f"{k}: {v}" for k, v in NETS.items()) + " (default: simple)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="parameter and activation dtype (default: float64, as the book)")
    p.add_argument("--backend", choices=fastzero.available_backends(), default="numba",
                   help="compute backend (default: numba)")
    p.add_argument("--threads", type=int, help="threads for numba and BLAS (default: all cores)")
    p.add_argument("--data-dir", help="an existing directory holding the four MNIST files, "
                   "gzip-compressed or not, e.g. the book's dataset/ (default: $FASTZERO_DATA, "
                   "else ~/.cache/fastzero/mnist, where missing files are downloaded)")
    p.add_argument("--test-size", type=int, help="use only the first N test samples")


def make_parser() -> argparse.ArgumentParser:
    from fastzero.trainer import LR_SCHEDULES

    parser = argparse.ArgumentParser(
        prog="fastzero",
        description="Train and evaluate the networks of 'Deep Learning from Scratch' on MNIST, "
                    "fast on a CPU.",
    )
    parser.add_argument("--version", action="version", version=f"fastzero {fastzero.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a network on MNIST",
                           description="Train one of the book's networks on MNIST.")
    _add_compute_options(train)
    train.add_argument("--epochs", type=int, default=20, help="default: 20")
    train.add_argument("--batch-size", type=int, default=100, help="default: 100")
    train.add_argument("--optimizer", choices=["sgd", "momentum", "nesterov", "adagrad",
                                               "rmsprop", "adam"], default="adam",
                       help="default: adam")
    train.add_argument("--lr", type=float,
                       help="learning rate (default: the optimizer's, 0.001 for adam, else 0.01)")
    train.add_argument("--seed", type=int, help="seed for weights, batch order and dropout")
    train.add_argument("--out", default="fastzero-run",
                       help="output directory (default: ./fastzero-run)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run saved in OUT/checkpoint.npz")
    train.add_argument("--overwrite", action="store_true",
                       help="start afresh even if OUT holds a run")
    train.add_argument("--train-size", type=int, help="use only the first N training samples")
    train.add_argument("--eval-samples", type=int, default=10000,
                       help="samples for the per-epoch accuracies (default: 10000; "
                            "the final test accuracy uses the whole test set)")
    train.add_argument("--sampling", choices=["shuffle", "book"], default="shuffle",
                       help="mini-batches: shuffle = each epoch a permutation of the training "
                            "set; book = drawn with replacement, as the book's Trainer "
                            "(default: shuffle)")
    train.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant",
                       help="constant = the book's fixed learning rate; cosine = from --lr down "
                            "to zero along half a cosine over the run (default: constant)")
    train.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="test accuracy of a parameter file",
                              description="Test accuracy of saved parameters (.npz, or the "
                                          "book's pickled params.pkl) for a given --net.")
    evaluate.add_argument("params", help="parameter file")
    _add_compute_options(evaluate)
    evaluate.add_argument("--batch-size", type=int, default=100, help="default: 100")
    evaluate.set_defaults(func=cmd_evaluate)

    info = sub.add_parser("info", help="versions, backend, threads, cache and data locations")
    info.add_argument("--data-dir", help="MNIST directory to check, each file read and verified "
                      "by SHA-256 (default as for train)")
    info.set_defaults(func=cmd_info)

    sub.add_parser("bench", help="benchmark numba vs numpy kernels (fastzero bench --help)",
                   add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastzero`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from fastzero import bench

        return bench.main(argv[1:])
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, FloatingPointError) as exc:
        print(f"fastzero {args.command}: error: {exc}", file=sys.stderr)
        return 1
