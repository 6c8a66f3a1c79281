"""The ``fastzero`` command line: ``train``, ``evaluate``, ``info``, ``bench`` and ``search``.

``fastzero train --net simple --epochs 1`` trains the book's SimpleConvNet on
MNIST and writes into ``--out``: ``params.npz`` (the final parameters),
``checkpoint.npz`` (updated every epoch; ``--resume`` continues from it),
``history.json`` (losses, accuracies, timings, the command's settings) and,
when matplotlib is installed, ``curves.png``.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import platform
import secrets
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import fastzero
from fastzero._backend import DEFAULT_BACKEND

#: --net choices -> what they build (see :func:`build_net`).
NETS = {
    "simple": "SimpleConvNet (chapter 7): conv-relu-pool-affine-relu-affine",
    "deep": "DeepConvNet (chapter 8): 6 conv layers, 3 pools, dropout",
    "two_layer": "TwoLayerNet (chapter 5): 784-50-10",
    "multi_layer": "MultiLayerNet (chapter 6): 784-100-100-100-100-10, ReLU, He init",
    "resnet": "ResNet: conv-BN-ReLU stem, residual blocks of 16, 32, 64 channels, affine",
}
_FLAT_INPUT = {"two_layer", "multi_layer"}


def build_net(name: str, input_shape: tuple[int, ...], dtype: Any, seed: int | None):
    """The book's network ``name`` for samples of ``input_shape`` ((C, H, W) or (D,))."""
    from fastzero import nets

    if name == "simple":
        return nets.SimpleConvNet(input_dim=input_shape, dtype=dtype, seed=seed)
    if name == "deep":
        return nets.DeepConvNet(input_dim=input_shape, dtype=dtype, seed=seed)
    if name == "resnet":
        return nets.ResNet(input_dim=input_shape, dtype=dtype, seed=seed)
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


def _plot_curves(path: Path, trainer, run: argparse.Namespace) -> bool:
    """curves.png (see :mod:`fastzero.curves`); False without matplotlib."""
    from fastzero.curves import plot_training_curves

    title = (f"{type(trainer.network).__name__} ({run.dtype}), "
             f"final test accuracy {trainer.final_test_acc:.2%}")
    return plot_training_curves(trainer, path, title)


#: The settings of a training run, by flag (argparse dest), with their defaults.
#: A checkpoint records them; ``--resume`` takes them from it and refuses a flag
#: that contradicts it (``--epochs`` may differ: it trains longer).
RUN_DEFAULTS: dict[str, Any] = {
    "net": "simple", "dtype": "float64", "data_dir": None, "train_size": None,
    "test_size": None, "epochs": 20, "batch_size": 100, "optimizer": "adam", "lr": None,
    "lr_schedule": "constant", "seed": None, "eval_samples": 10000, "sampling": "shuffle",
    "augment": "none",
}
#: How the numbers are computed: restored on --resume unless given, and may be changed.
COMPUTE_DEFAULTS: dict[str, Any] = {"backend": DEFAULT_BACKEND, "threads": None}
_RUN_OUTPUTS = ("checkpoint.npz", "params.npz", "history.json", "curves.png")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _same_setting(dest: str, given: Any, recorded: Any) -> bool:
    if dest == "data_dir":
        return recorded is not None and Path(given).resolve() == Path(recorded).resolve()
    return given == recorded


def _resumed_settings(given: dict[str, Any], saved: dict[str, Any], out: Path) -> dict[str, Any]:
    """The run's settings from its checkpoint, with ``given`` flags checked against them."""
    recorded = saved["run"]
    if not recorded:  # a checkpoint written before runs recorded their settings
        print(f"note: {out / 'checkpoint.npz'} does not record its run's settings; using the "
              "flags given and the defaults (the checkpoint is checked against them)",
              file=sys.stderr)
    for dest, value in given.items():
        if recorded and dest in RUN_DEFAULTS and dest != "epochs" and not _same_setting(dest, value,
                                                                           recorded.get(dest)):
            raise ValueError(
                f"{_flag(dest)} {value} contradicts the run in {out}, which has "
                f"{_flag(dest)} {recorded.get(dest)}; leave it out to continue that run, or "
                "start another with --overwrite or another --out"
            )
    settings = {**RUN_DEFAULTS, **COMPUTE_DEFAULTS, **recorded, **given}
    done = saved["current_epoch"]
    if settings["epochs"] <= done:
        raise ValueError(
            f"the run in {out} has already trained {_plural(done, 'epoch')} of "
            f"{settings['epochs']}; pass a larger --epochs to train longer"
        )
    return settings


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The run and compute flags given on the command line (the others are None)."""
    return {dest: getattr(args, dest) for dest in (*RUN_DEFAULTS, *COMPUTE_DEFAULTS)
            if getattr(args, dest) is not None}


def _kernel_compilations() -> int:
    """How many kernel signatures numba has compiled in this process so far (its
    cache misses: a cached signature is loaded, not counted)."""
    total = 0
    for name, module in list(sys.modules.items()):
        if name.startswith("fastzero.kernels.numba.") and module is not None:
            for obj in list(vars(module).values()):
                misses = getattr(getattr(obj, "stats", None), "cache_misses", None)
                if misses is not None:
                    total += sum(misses.values())
    return total


def _first_step(trainer, notice_after: float = 1.0, poll: float = 0.25) -> None:
    """The run's first step. If it is still running after ``notice_after`` seconds and
    numba is compiling kernels, say so, and how long the step took once it is done."""
    import threading

    done, noticed = threading.Event(), threading.Event()
    before = _kernel_compilations()

    def notice():
        if done.wait(notice_after):
            return
        while not done.is_set():
            if _kernel_compilations() > before:
                noticed.set()
                print("compiling kernels (first run only, cached afterwards)...", end="",
                      flush=True)
                return
            done.wait(poll)

    watcher = threading.Thread(target=notice, daemon=True)
    start = time.perf_counter()
    watcher.start()
    try:
        trainer.train_step()
    finally:
        done.set()
        watcher.join()
        if noticed.is_set():
            print(f" {time.perf_counter() - start:.1f} s", flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    from fastzero import _rundir
    from fastzero import checkpoint as checkpoints
    from fastzero.trainer import Trainer

    if args.resume and args.overwrite:
        raise ValueError("--resume continues the run in --out, --overwrite replaces it: "
                         "pass one of them")
    given = _given(args)
    if args.resume and not Path(args.out).exists():  # not created for a run that is not there
        raise FileNotFoundError(f"--resume: no checkpoint at {Path(args.out) / 'checkpoint.npz'}")
    with _rundir.open_run_dir(args.out) as out:
        checkpoint = out / "checkpoint.npz"
        if args.resume:
            if not checkpoint.is_file():
                raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint}")
            saved = checkpoints.read_settings(checkpoint)
            settings = _resumed_settings(given, saved, out)
        else:
            if checkpoint.exists() and not args.overwrite:
                raise FileExistsError(
                    f"{out} already holds a run ({checkpoint.name}); pass --resume to continue "
                    "it, --overwrite to start afresh, or choose another --out"
                )
            settings = {**RUN_DEFAULTS, **COMPUTE_DEFAULTS, **given}
        drawn_seed = settings["seed"] is None and not args.resume
        if drawn_seed:
            settings["seed"] = secrets.randbelow(2**32)
        return _train_run(args, settings, out, drawn_seed, Trainer)


def _train_run(args: argparse.Namespace, settings: dict[str, Any], out: Path, drawn_seed: bool,
               trainer_class) -> int:
    """Load the data, build (or restore) the run described by ``settings`` in ``out``, train."""
    run = argparse.Namespace(**settings)
    _setup_compute(run)
    (x_train, t_train), (x_test, t_test) = _load_data(run)
    for dest, n, available in (("train_size", run.train_size, len(x_train)),
                               ("test_size", run.test_size, len(x_test))):
        if n is not None and n > available:
            raise ValueError(f"{_flag(dest)} {n}: the data has only {available} samples")
    settings.update(train_size=len(x_train), test_size=len(x_test),
                    data_dir=str(_resolved_data_dir(run.data_dir)))
    net = build_net(run.net, x_train.shape[1:], np.dtype(run.dtype), run.seed)
    if args.overwrite:
        for name in _RUN_OUTPUTS:
            (out / name).unlink(missing_ok=True)
    trainer = trainer_class(
        net, x_train, t_train, x_test, t_test, epochs=run.epochs, mini_batch_size=run.batch_size,
        optimizer=run.optimizer, optimizer_param={} if run.lr is None else {"lr": run.lr},
        evaluate_sample_num_per_epoch=run.eval_samples, verbose=not args.quiet,
        seed=run.seed, checkpoint=out / "checkpoint.npz", replacement=run.sampling == "book",
        lr_schedule=run.lr_schedule, report="epochs",
        augment=None if run.augment == "none" else run.augment)
    settings["lr"] = trainer.optimizer_settings.get("lr", run.lr)
    trainer.run_info = settings
    if args.resume:
        trainer.load_checkpoint(out / "checkpoint.npz")
    if not args.quiet:
        start_at = (f"resuming at epoch {trainer.current_epoch + 1}, step "
                    f"{trainer.current_iter % trainer.iter_per_epoch + 1}: "
                    if trainer.current_iter else "")
        seed_note = f" (drawn; --seed {run.seed} repeats this run)" if drawn_seed else ""
        print(f"{start_at}training {type(net).__name__} ({run.dtype}, backend {run.backend}, "
              f"{fastzero.get_num_threads()} threads) on {len(x_train)} samples, "
              f"{_plural(run.epochs, 'epoch')} of {trainer.iter_per_epoch} steps, "
              f"seed {run.seed}{seed_note}")
    start = time.perf_counter()
    try:
        if trainer.current_iter < trainer.max_iter:
            _first_step(trainer)
        test_acc = trainer.train()
    except KeyboardInterrupt:
        print(f"\ninterrupted at step {trainer.current_iter} of {trainer.max_iter}", file=sys.stderr)
        if (out / "checkpoint.npz").exists():
            print(f"the run is saved in {out / 'checkpoint.npz'}; continue it with:\n"
                  f"  fastzero train --out {shlex.quote(str(out))} --resume", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - start

    net.save_params(out / "params.npz")
    _write_json(out / "history.json", {
        "net": run.net,
        "settings": settings,
        "iter_per_epoch": trainer.iter_per_epoch,
        "train_loss": trainer.train_loss_list,
        "train_acc": trainer.train_acc_list,
        "test_acc": trainer.test_acc_list,
        "final_test_acc": test_acc,
        "seconds": seconds,
    })
    plotted = _plot_curves(out / "curves.png", trainer, run)
    print(f"final test accuracy: {test_acc:.4f} ({len(x_test)} samples); "
          f"training took {seconds:.1f} s")
    print(f"wrote {out / 'params.npz'}, {out / 'history.json'}"
          + (f", {out / 'curves.png'}" if plotted else " (install matplotlib for curves.png)"))
    return 0


def _resolved_data_dir(data_dir: str | None) -> Path:
    from fastzero.datasets.mnist import resolve_data_dir

    return resolve_data_dir(data_dir).resolve()


# -- evaluate --------------------------------------------------------------

def cmd_evaluate(args: argparse.Namespace) -> int:
    _setup_compute(args)
    _, (x_test, t_test) = _load_data(args)
    net = _loaded_net(args, x_test.shape[1:])
    acc = net.accuracy(x_test, t_test, batch_size=args.batch_size)
    print(f"test accuracy: {acc:.4f} ({len(x_test)} samples, {args.params})")
    return 0


def _loaded_net(args: argparse.Namespace, input_shape: tuple[int, ...]):
    """``--net`` with the parameters of ``args.params``; when they do not fit, the
    error names the networks whose parameters the file does hold."""
    net = build_net(args.net, input_shape, np.dtype(args.dtype), seed=0)
    try:
        net.load_params(args.params)
    except ValueError as exc:
        fitting = [name for name in NETS if name != args.net and _holds(args, name)]
        if not fitting:
            raise
        raise ValueError(f"{exc}\n{args.params} holds the parameters of "
                         f"{' or '.join(f'--net {name}' for name in fitting)}") from None
    return net


def _holds(args: argparse.Namespace, name: str) -> bool:
    """Whether ``args.params`` loads into network ``name`` (with MNIST's input shape)."""
    shape = (784,) if name in _FLAT_INPUT else (1, 28, 28)
    try:
        build_net(name, shape, np.dtype(args.dtype), seed=0).load_params(args.params)
    except ValueError:
        return False
    return True


# -- show ------------------------------------------------------------------

def cmd_show(args: argparse.Namespace) -> int:
    from fastzero import visualize

    _setup_compute(args)
    out = Path(args.out or f"{args.what}.png")
    if args.what == "filters":
        net = _loaded_net(args, (784,) if args.net in _FLAT_INPUT else (1, 28, 28))
        first = next(iter(net.params.values()))
        if first.ndim != 4:
            raise ValueError(f"--net {args.net} has no convolution filters to show")
        initial = next(iter(build_net(args.net, (1, 28, 28), np.dtype(args.dtype),
                                      seed=0).params.values()))
        fig = visualize.filters_figure(first, initial, titles=[f"{args.params} (first layer)",
                                                               "before training (seed 0)"])
    else:
        _, (x_test, t_test) = _load_data(args)
        net = _loaded_net(args, x_test.shape[1:])
        if args.what == "misclassified":
            fig = visualize.misclassified_figure(net, x_test, t_test, max_images=args.count)
        else:
            if x_test.ndim != 4:
                raise ValueError(f"Grad-CAM needs a convolutional network, not --net {args.net}")
            layers = [int(one) if one.lstrip("-").isdigit() else one
                      for one in (args.layer or "").split(",") if one] or [None]
            fig = visualize.grad_cam_figure(net, x_test[:args.count], layer=layers)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")
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

def _arg_type(convert, accept, requirement: str):
    """An argparse type: ``convert(text)`` if ``accept`` takes it, else an error saying
    the value ``must be <requirement>`` (argparse adds the flag's name)."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value

    return parse


_positive_int = _arg_type(int, lambda v: v >= 1, "a positive integer")
_positive_float = _arg_type(float, lambda v: math.isfinite(v) and v > 0,
                            "a positive finite number")
_seed = _arg_type(int, lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)")


def _add_compute_options(p: argparse.ArgumentParser, defaults: bool = True) -> None:
    """--net, --dtype, --backend, --threads, --data-dir, --test-size. Without ``defaults``
    every option is None unless given (``train`` fills them in, or takes them from the
    checkpoint it resumes)."""
    def default(value):
        return value if defaults else None

    p.add_argument("--net", choices=NETS, default=default("simple"),
                   help="; ".join(f"{k}: {v}" for k, v in NETS.items()) + " (default: simple)")
    p.add_argument("--dtype", choices=["float32", "float64"], default=default("float64"),
                   help="parameter and activation dtype (default: float64, as the book)")
    p.add_argument("--backend", choices=fastzero.available_backends(),
                   default=default(DEFAULT_BACKEND), help=f"compute backend (default: {DEFAULT_BACKEND})")
    p.add_argument("--threads", type=_positive_int,
                   help="threads for numba and BLAS (default: all cores)")
    p.add_argument("--data-dir", help="an existing directory holding the four MNIST files, "
                   "gzip-compressed or not, e.g. the book's dataset/ (default: $FASTZERO_DATA, "
                   "else ~/.cache/fastzero/mnist, where missing files are downloaded)")
    p.add_argument("--test-size", type=_positive_int, help="use only the first N test samples")


def make_parser() -> argparse.ArgumentParser:
    from fastzero.augment import PRESETS
    from fastzero.optimizer import OPTIMIZERS
    from fastzero.trainer import LR_SCHEDULES

    parser = argparse.ArgumentParser(
        prog="fastzero",
        description="Train and evaluate the networks of 'Deep Learning from Scratch' on MNIST, "
                    "fast on a CPU.",
    )
    parser.add_argument("--version", action="version", version=f"fastzero {fastzero.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train", help="train a network on MNIST",
        description="Train one of the book's networks on MNIST. The run's settings are saved "
                    "in OUT/checkpoint.npz: 'fastzero train --out OUT --resume' continues it "
                    "(a flag given with --resume must agree with the run; --epochs may be "
                    "larger, to train longer; --backend and --threads may change).")
    _add_compute_options(train, defaults=False)
    train.add_argument("--epochs", type=_positive_int, help="default: 20")
    train.add_argument("--batch-size", type=_positive_int, help="default: 100")
    train.add_argument("--optimizer", choices=OPTIMIZERS,
                       help=f"default: {RUN_DEFAULTS['optimizer']}")
    default_lrs = ", ".join(f"{name} {inspect.signature(cls).parameters['lr'].default}"
                            for name, cls in OPTIMIZERS.items())
    train.add_argument("--lr", type=_positive_float,
                       help=f"learning rate (default: the optimizer's: {default_lrs})")
    train.add_argument("--seed", type=_seed, help="seed for weights, batch order and dropout "
                       "(default: drawn at random, printed and recorded)")
    train.add_argument("--out", default="fastzero-run",
                       help="output directory (default: ./fastzero-run); locked while training")
    train.add_argument("--resume", action="store_true",
                       help="continue the run saved in OUT/checkpoint.npz with its settings")
    train.add_argument("--overwrite", action="store_true",
                       help="start afresh even if OUT holds a run (its files are removed)")
    train.add_argument("--train-size", type=_positive_int,
                       help="use only the first N training samples")
    train.add_argument("--eval-samples", type=_positive_int,
                       help="samples for the per-epoch accuracies (default: 10000; "
                            "the final test accuracy uses the whole test set)")
    train.add_argument("--sampling", choices=["shuffle", "book"],
                       help="mini-batches: shuffle = each epoch a permutation of the training "
                            "set; book = drawn with replacement, as the book's Trainer "
                            "(default: shuffle)")
    train.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                       help="constant = the book's fixed learning rate; cosine = from --lr down "
                            "to zero along half a cosine over the run (default: constant)")
    train.add_argument("--augment", choices=["none", *PRESETS],
                       help="transform every mini-batch's images: shift = up to 2 pixels; "
                            "affine = shifts, rotations up to 10 degrees, zoom up to 10 %%; "
                            "elastic = milder affine plus elastic distortions (default: none)")
    train.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="test accuracy of a parameter file",
                              description="Test accuracy of saved parameters (.npz, or the "
                                          "book's pickled params.pkl) for a given --net.")
    evaluate.add_argument("params", help="parameter file")
    _add_compute_options(evaluate)
    evaluate.add_argument("--batch-size", type=_positive_int, default=100, help="default: 100")
    evaluate.set_defaults(func=cmd_evaluate)

    show = sub.add_parser("show", help="draw what a trained network sees (PNG)",
                          description="Draw the first layer's filters (beside a fresh "
                                      "network's), the misclassified test digits, or Grad-CAM "
                                      "maps over a convolution layer, for a parameter file.")
    show.add_argument("what", choices=["filters", "misclassified", "gradcam"])
    show.add_argument("params", help="parameter file (.npz, or the book's params.pkl)")
    _add_compute_options(show)
    show.add_argument("--count", type=_positive_int, default=20,
                      help="images to draw (misclassified, gradcam; default: 20)")
    show.add_argument("--layer", help="gradcam: the layer to look at, by name or index; "
                                      "inside a residual block as BLOCK.LAYER, e.g. "
                                      "block2_1.conv2; several, comma-separated, draw a row "
                                      "each (default: the last convolution or block)")
    show.add_argument("--out", help="PNG to write (default: WHAT.png)")
    show.set_defaults(func=cmd_show)

    info = sub.add_parser("info", help="versions, backend, threads, cache and data locations")
    info.add_argument("--data-dir", help="MNIST directory to check, each file read and verified "
                      "by SHA-256 (default as for train)")
    info.set_defaults(func=cmd_info)

    sub.add_parser("bench", help="benchmark numba vs numpy kernels (fastzero bench --help)",
                   add_help=False)
    sub.add_parser("search", help="hyper-parameter search on Dask (fastzero search --help)",
                   add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastzero`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from fastzero import bench

        return bench.main(argv[1:])
    if argv[:1] == ["search"]:
        from fastzero.search import command

        return command.main(argv[1:])
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, FloatingPointError) as exc:
        print(f"fastzero {args.command}: error: {exc}", file=sys.stderr)
        return 1
