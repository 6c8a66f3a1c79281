"""``fastzero search``: the book's hyper-parameter search (chapter 6) on Dask.

``fastzero search --out DIR`` runs the book's experiment on a LocalCluster
sized to this machine; ``--scheduler tcp://HOST:8786`` runs it on an existing
Dask cluster; ``--resume`` runs only the trials missing from
``DIR/trials.jsonl``; ``fastzero search --report DIR`` prints the table and
redraws ``DIR/best_trials.png`` from the results file.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from fastzero.search.space import BOOK_SPACE, PARAMS, SCALES, space_from_specs

__all__ = ["make_parser", "main", "settings_from_args"]


def make_parser() -> argparse.ArgumentParser:
    from fastzero import available_backends
    from fastzero._backend import DEFAULT_BACKEND
    from fastzero.search.trial import NETS
    from fastzero.optimizer import OPTIMIZERS

    p = argparse.ArgumentParser(
        prog="fastzero search",
        description="Random search of hyper-parameters as in the book's chapter 6 (100 trials of "
                    "MultiLayerNet on 500 MNIST samples, lr and weight decay log-uniform), run in "
                    "parallel on Dask: a LocalCluster of this machine's cores, or --scheduler.",
        epilog="Hyper-parameters (--param NAME=LOW:HIGH[:SCALE] or NAME=VALUE, SCALE one of "
               f"{', '.join(SCALES)}; default log): "
               + "; ".join(f"{k}: {v}" for k, v in PARAMS.items())
               + ". The default space is the book's: "
               + " ".join(r.spec() for r in BOOK_SPACE) + ".")
    p.add_argument("--report", metavar="DIR",
                   help="print the table and redraw the figure of the search in DIR, then exit")
    p.add_argument("--trials", type=int, default=100, help="default: 100 (the book)")
    p.add_argument("--epochs", type=int, default=50, help="epochs per trial (default: 50, the book)")
    p.add_argument("--out", default="fastzero-search", help="output directory (default: "
                   "./fastzero-search): search.json, trials.jsonl, best_trials.png")
    p.add_argument("--resume", action="store_true", help="run only the trials missing from OUT")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="an existing Dask scheduler, e.g. tcp://HOST:8786 (default: start a "
                        "LocalCluster of worker processes on this machine)")
    p.add_argument("--workers", type=int,
                   help="LocalCluster worker processes (default: cores // --threads-per-trial)")
    p.add_argument("--threads-per-trial", type=int, default=1,
                   help="numba and BLAS threads of each trial (default: 1)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=SPEC",
                   help="a searched (LOW:HIGH[:SCALE]) or fixed (VALUE) hyper-parameter; repeat")
    p.add_argument("--net", choices=NETS, default="multi_layer",
                   help="multi_layer: MultiLayerNet (the book's search, ReLU, He init); "
                        "multi_layer_bn: with batch normalisation; two_layer; simple: "
                        "SimpleConvNet; deep: DeepConvNet (default: multi_layer)")
    p.add_argument("--hidden-layers", type=int, default=6,
                   help="hidden layers of the multi_layer networks (default: 6, the book)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="default: sgd (the book)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate when not searched")
    p.add_argument("--batch-size", type=int, default=100, help="when not searched (default: 100)")
    p.add_argument("--hidden-size", type=int, default=100, help="when not searched (default: 100)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="when not searched (default: 0)")
    p.add_argument("--dropout", type=float, default=0.0, help="when not searched (default: 0)")
    p.add_argument("--seed", type=int, default=0,
                   help="search seed: trial i's parameters and training follow from (seed, i)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--backend", choices=available_backends(), default=DEFAULT_BACKEND)
    p.add_argument("--train-size", type=int, default=500,
                   help="first N MNIST training samples, validation included (default: 500)")
    p.add_argument("--val-rate", type=float, default=0.2,
                   help="fraction of them held out for validation (default: 0.2)")
    p.add_argument("--sampling", choices=["shuffle", "book"], default="shuffle",
                   help="mini-batches: shuffled epochs, or drawn with replacement as the book's "
                        "Trainer (default: shuffle)")
    p.add_argument("--halving", action="store_true",
                   help="successive halving: train all trials MIN_EPOCHS epochs, the best "
                        "1/ETA of them ETA times longer, and so on up to --epochs")
    p.add_argument("--eta", type=int, default=3, help="halving factor (default: 3)")
    p.add_argument("--min-epochs", type=int, default=1, help="first rung (default: 1)")
    p.add_argument("--data-dir", help="MNIST directory (as for fastzero train)")
    p.add_argument("--top", type=int, default=20, help="best trials in the table and figure")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def settings_from_args(args: argparse.Namespace):
    """The :class:`SearchSettings` the options describe."""
    from fastzero.search.plan import SearchSettings
    from fastzero.search.trial import NETS, TrialConfig

    fixed = {"lr": args.lr, "batch_size": args.batch_size, "hidden_size": args.hidden_size,
             "weight_decay": args.weight_decay, "dropout": args.dropout}
    config = TrialConfig(net=args.net, hidden_layers=args.hidden_layers, optimizer=args.optimizer,
                         dtype=args.dtype, backend=args.backend, threads=args.threads_per_trial,
                         sampling=args.sampling, fixed=fixed)
    book = [r.spec() for r in BOOK_SPACE if r.name in NETS[args.net]]
    return SearchSettings(trials=args.trials, epochs=args.epochs, seed=args.seed,
                          space=space_from_specs(book + args.param), config=config,
                          train_size=args.train_size, val_rate=args.val_rate,
                          halving=args.halving, eta=args.eta, min_epochs=args.min_epochs)


def _report(directory: Path, records: list, top: int) -> None:
    from fastzero.search.report import FIGURE, plot_best, summary, table

    print(summary(records))
    print(table(records, top))
    if plot_best(records, directory / FIGURE, top):
        print(f"wrote {directory / FIGURE}")
    else:
        print("install matplotlib for the figure")


def _describe(client, scheduler: str | None) -> str:
    info = client.scheduler_info()
    workers = info["workers"].values()
    where = scheduler or f"LocalCluster at {info['address']}"
    text = (f"Dask: {len(workers)} workers, {sum(w['nthreads'] for w in workers)} task threads "
            f"({where})")
    if "dashboard" in info.get("services", {}):
        text += f"; dashboard {client.dashboard_link}"
    return text


def cmd_search(args: argparse.Namespace) -> int:
    from fastzero.search.plan import load_search_data
    from fastzero.search.results import RESULTS, read_records
    from fastzero.search.runner import check_workers, dask_client, require_dask, run_search

    require_dask()
    settings = settings_from_args(args)
    out = Path(args.out)
    data = load_search_data(settings, args.data_dir)
    with dask_client(args.scheduler, args.threads_per_trial, args.workers) as client:
        client.wait_for_workers(1, timeout=60)
        print(_describe(client, args.scheduler), flush=True)
        for warning in check_workers(client, args.threads_per_trial):
            print(f"warning: {warning}", file=sys.stderr)
        before = len(read_records(out / RESULTS)) if args.resume else 0
        start = time.perf_counter()
        records = run_search(settings, data, out, client, resume=args.resume,
                             progress=not args.quiet)
        wall = time.perf_counter() - start
    ran = len(records) - before
    what = "trial runs (trials x rungs)" if settings.halving else "trials"
    print(f"ran {ran} {what} in {wall:.1f} s ({60 * ran / wall:.1f} per minute)")
    _report(out, records, args.top)
    return 0


def cmd_report(directory: str, top: int) -> int:
    from fastzero.search.results import RESULTS, read_records

    path = Path(directory) / RESULTS
    if not path.is_file():
        raise FileNotFoundError(f"no results file {path}")
    _report(Path(directory), read_records(path), top)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``fastzero search ...``; returns the exit status."""
    args = make_parser().parse_args(argv)
    try:
        if args.report:
            return cmd_report(args.report, args.top)
        return cmd_search(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (ImportError, OSError, ValueError, TimeoutError) as exc:
        print(f"fastzero search: error: {exc}", file=sys.stderr)
        return 1
