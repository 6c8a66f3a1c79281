"""The book's chapter 5-8 scripts, unchanged, on the book's code and on fastzero.

    python benchmarks/book_scripts.py /path/to/deep-learning-from-scratch
        [--scripts ch05/gradient_check.py ...] [--rounds 3] [--timeout 300]

Two temporary copies of the book's repository are made. In one, the modules
the scripts import (``common/*.py``, ``dataset/mnist.py`` and the chapters'
``two_layer_net.py``, ``simple_convnet.py``, ``deep_convnet.py``) are replaced
by one-line star re-exports of fastzero; the other is the book as it is. Both
get the MNIST files of ``$FASTZERO_DATA`` (the book's loader reads them from
its ``dataset/`` folder, converted once beforehand into the ``mnist.pkl`` it
reads on every run after its first). Every script then runs in its own chapter
folder, book and fastzero alternating, ``rounds`` times, with
``MPLBACKEND=Agg``; each row prints whether the script exited cleanly on both,
the median wall time and CPU time of both, and the median over the rounds of
fastzero's wall time over the book's in that round. A script still running
after ``timeout`` seconds is stopped, and its row compares the training steps
each side finished (the ``train loss:`` lines both Trainers print when not on
a terminal) instead. Run it on an idle machine: the book's
two-thread OpenBLAS slows down badly when another process shares the cores.
asv collects nothing here.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: the book module -> the fastzero module a script gets in its place
REEXPORTS = {
    "common/functions.py": "fastzero.functions",
    "common/gradient.py": "fastzero.gradient",
    "common/layers.py": "fastzero.layers",
    "common/multi_layer_net.py": "fastzero.nets.multi_layer_net",
    "common/multi_layer_net_extend.py": "fastzero.nets.multi_layer_net_extend",
    "common/optimizer.py": "fastzero.optimizer",
    "common/trainer.py": "fastzero.trainer",
    "common/util.py": "fastzero.util",
    "dataset/mnist.py": "fastzero.datasets.mnist",
    "ch05/two_layer_net.py": "fastzero.nets.two_layer_net",
    "ch07/simple_convnet.py": "fastzero.nets.simple_convnet",
    "ch08/deep_convnet.py": "fastzero.nets.deep_convnet",
}

#: module files above are libraries, not scripts
_LIBRARIES = {"two_layer_net.py", "simple_convnet.py", "deep_convnet.py"}


def book_scripts(book: Path) -> list[str]:
    """The chapter 5-8 scripts that import a module :data:`REEXPORTS` replaces."""
    imported = {Path(module).parent.name if module.startswith(("common", "dataset"))
                else Path(module).stem for module in REEXPORTS}
    found = []
    for path in sorted(book.glob("ch0[5-8]/*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name not in _LIBRARIES and any(f"{name} import" in text or f"{name}." in text
                                               for name in imported):
            found.append(path.relative_to(book).as_posix())
    return found


def make_copies(book: Path, data: Path, work: Path) -> tuple[Path, Path]:
    """Copies of ``book`` (as it is, and with its modules re-exporting fastzero), with MNIST."""
    copies = []
    for name in ("book", "fastzero"):
        copy = work / name
        shutil.copytree(book, copy, ignore=shutil.ignore_patterns(".git", "mnist.pkl"))
        for mnist_file in data.glob("*-ubyte*"):
            shutil.copy(mnist_file, copy / "dataset" / mnist_file.name)
        copies.append(copy)
    for module, target in REEXPORTS.items():
        (copies[1] / module).write_text(f"from {target} import *  # noqa: F401,F403\n")
    # The book's loader converts the files into dataset/mnist.pkl on its first run and reads
    # that pickle from then on: convert once here, as on a reader's machine after one script.
    subprocess.run([sys.executable, "-c", "from dataset.mnist import init_mnist; init_mnist()"],
                   cwd=copies[0], check=True, capture_output=True)
    return copies[0], copies[1]


def run_script(root: Path, script: str, timeout: float) -> dict:
    """Run ``root/script`` in its folder: exit status, wall and CPU seconds, steps printed."""
    path = root / script
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, path.name], cwd=path.parent, env=env,
                              capture_output=True, text=True, timeout=timeout)
        status, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as stopped:
        status = "timeout"
        output = (stopped.stdout or b"").decode(errors="replace")  # bytes even with text=True
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    steps = output.count("train loss:")
    tail = output.strip().splitlines()[-1:] if status not in (0, "timeout") else []
    return {"status": status, "wall": wall, "cpu": cpu, "steps": steps, "tail": tail}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("book", nargs="?", type=Path, help="a checkout of the book's repository")
    parser.add_argument("--scripts", nargs="*", help="paths inside the book (default: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per script run")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("FASTZERO_DATA"),
                        help="the MNIST files (default: $FASTZERO_DATA)")
    args = parser.parse_args(argv)
    if args.book is None or not (args.book / "common").is_dir():
        print("no checkout of the book's repository given; nothing to compare")
        return 0
    if args.data_dir is None:
        parser.error("give --data-dir or set FASTZERO_DATA to a folder holding the MNIST files")
    scripts = args.scripts or book_scripts(args.book)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.rounds} rounds, alternating; "
          f"timeout {args.timeout:g} s")
    print(f"{'script':40s} {'runs':>9s} {'book s':>8s} {'fastzero s':>10s} {'ratio':>6s} "
          f"{'book cpu':>8s} {'fz cpu':>7s}")
    with tempfile.TemporaryDirectory(prefix="fastzero-book-scripts-") as work:
        book_copy, fastzero_copy = make_copies(args.book, args.data_dir, Path(work))
        for script in scripts:
            runs: dict[str, list[dict]] = {"book": [], "fastzero": []}
            for _ in range(args.rounds):
                runs["book"].append(run_script(book_copy, script, args.timeout))
                runs["fastzero"].append(run_script(fastzero_copy, script, args.timeout))
            print(_row(script, runs), flush=True)
    return 0


def _row(script: str, runs: dict[str, list[dict]]) -> str:
    def median(side: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[side])

    statuses = {side: {run["status"] for run in runs[side]} for side in runs}
    ran = "/".join("ok" if s == {0} else "timeout" if s == {"timeout"} else "FAIL"
                   for s in statuses.values())
    book, ours = median("book", "wall"), median("fastzero", "wall")
    # Each round's two runs are neighbours in time: the median of the rounds' ratios is
    # steadier than the ratio of medians on a machine whose speed drifts.
    ratios = [ours_run["wall"] / book_run["wall"]
              for book_run, ours_run in zip(runs["book"], runs["fastzero"])]
    ratio = f"{statistics.median(ratios):6.2f}"
    if "timeout" in statuses["book"] | statuses["fastzero"]:
        # Equal time budgets: compare the steps done; ratio = book steps / fastzero steps.
        book_steps, our_steps = median("book", "steps"), median("fastzero", "steps")
        ratio = f"{book_steps / our_steps:6.2f}" if our_steps else "     -"
        ran += f" ({book_steps:g} vs {our_steps:g} steps)"
    failures = [line for side in runs for run in runs[side] for line in run["tail"]]
    row = (f"{script:40s} {ran:>9s} {book:8.2f} {ours:10.2f} {ratio} "
           f"{median('book', 'cpu'):8.2f} {median('fastzero', 'cpu'):7.2f}")
    return row + (f"\n    {failures[0]}" if failures else "")


if __name__ == "__main__":
    sys.exit(main())
