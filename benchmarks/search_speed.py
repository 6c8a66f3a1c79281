"""The book's hyper-parameter search three ways: serial, on the default LocalCluster, and with
successive halving (not an asv suite: run it by hand, it takes minutes).

    python benchmarks/search_speed.py --trials 100 --rounds 5 --out /tmp/search-speed

Serial: this process trains the trials one after another, one thread. Parallel: the same
trials on ``fastzero search``'s default cluster (``cores`` worker processes, one thread each),
started once. The two alternate in ``--rounds`` blocks of ``trials / rounds`` trials so that
the machine's other load falls on both alike (on a shared machine, blocks of one trial per
worker: ``--rounds trials/cores``). Reported: trials per minute of each (median over the
rounds), their ratio, CPU seconds per trial of each, the CPU utilisation of the cluster's
worker processes, each worker's threads that used CPU, the most runnable worker threads seen
at once (sampled from /proc), the best validation accuracy, and then successive halving on the
same trials: its best accuracy and CPU-minutes, against what the plain search had found after
as many CPU-minutes.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import threading
import time
from pathlib import Path


def _running_threads(pids: list[int]) -> int:
    """Threads of ``pids`` in state R (running or runnable) right now."""
    count = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    count += f.read().rsplit(")", 1)[1].split()[0] == "R"
            except (FileNotFoundError, IndexError):
                pass
    return count


class Sampler:
    """Samples the workers' runnable threads every 0.1 s while running."""

    def __init__(self, pids: list[int]) -> None:
        self.pids, self.samples, self._stop = pids, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(_running_threads(self.pids))

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _thread_cpu(pids: list[int]) -> dict[tuple[int, int], float]:
    """CPU seconds of every thread of ``pids``, by (pid, thread id)."""
    import psutil

    return {(pid, t.id): t.user_time + t.system_time
            for pid in pids for t in psutil.Process(pid).threads()}


def _cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def main() -> None:
    import psutil

    from fastzero.search.command import make_parser, settings_from_args
    from fastzero.search.plan import best_so_far, load_search_data
    from fastzero.search.runner import default_workers, local_cluster, run_search
    from fastzero.search.trial import run_trial

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default="search-speed")
    p.add_argument("--data-dir")
    p.add_argument("--no-halving", action="store_true")
    args = p.parse_args()
    base = ["--trials", str(args.trials), "--epochs", str(args.epochs)]
    if args.data_dir:
        base += ["--data-dir", args.data_dir]
    settings = settings_from_args(make_parser().parse_args(base))
    data = load_search_data(settings, args.data_dir)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    print(f"load average at start: {os.getloadavg()}; {default_workers()} workers")

    from distributed import Client

    serial_records, parallel_records, rounds = [], [], []
    with local_cluster(dashboard_address=":0") as cluster, Client(cluster) as client:
        client.wait_for_workers(default_workers())
        pids = list(client.run(os.getpid).values())
        # warm up: numba's cache loaded in every worker and here
        run_search(settings.with_trials(default_workers()), data, out / "warmup", client,
                   progress=False)
        run_trial(settings.config, 0, settings.params(0), settings.trial_seed(0), data, 1)
        block = args.trials // args.rounds
        parallel_cpu = parallel_wall = serial_cpu = serial_wall = 0.0
        samples: list[int] = []
        threads_before = _thread_cpu(pids)
        for k in range(args.rounds):
            trials = range(k * block, (k + 1) * block)
            me, start = psutil.Process(), time.perf_counter()
            cpu_start = sum(me.cpu_times()[:2])
            for i in trials:
                serial_records.append(run_trial(settings.config, i, settings.params(i),
                                                settings.trial_seed(i), data,
                                                settings.epochs)[0])
            serial = time.perf_counter() - start
            serial_cpu += sum(me.cpu_times()[:2]) - cpu_start
            serial_wall += serial
            # the cluster runs the same trials: the search grows by a block each round
            shifted = settings.with_trials((k + 1) * block)
            directory = out / "parallel"
            cpu0, start = _cpu_seconds(pids), time.perf_counter()
            with Sampler(pids) as sampler:
                records = run_search(shifted, data, directory, client, resume=k > 0,
                                     progress=False)
            parallel = time.perf_counter() - start
            parallel_cpu += _cpu_seconds(pids) - cpu0
            parallel_wall += parallel
            samples += sampler.samples
            rounds.append((60 * block / serial, 60 * block / parallel))
            print(f"round {k + 1}: serial {60 * block / serial:.1f} trials/min, parallel "
                  f"{60 * block / parallel:.1f} trials/min, ratio {serial / parallel:.2f}, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
        parallel_records = records
        threads_after = _thread_cpu(pids)
        for pid in pids:
            used = sorted((threads_after[k] - threads_before.get(k, 0.0)
                           for k in threads_after if k[0] == pid), reverse=True)
            busy = sum(u > 0.05 * sum(used) for u in used)
            print(f"worker pid {pid}: {len(used)} threads, {busy} with > 5 % of its CPU time; "
                  f"the busiest {used[0] / sum(used):.0%}")
        cores = default_workers()
        s_rate = statistics.median(r[0] for r in rounds)
        p_rate = statistics.median(r[1] for r in rounds)
        print(f"median trials/min: serial {s_rate:.1f}, parallel {p_rate:.1f}, "
              f"ratio {p_rate / s_rate:.2f}; per-round ratios "
              f"{[round(b / a, 2) for a, b in rounds]}")
        print(f"serial total {sum(r['time'] for r in serial_records):.0f} s of trial time; "
              f"parallel wall {parallel_wall:.0f} s for {len(rounds) * block} trials")
        n = len(rounds) * block
        print(f"CPU seconds per trial: serial {serial_cpu / n:.2f}, cluster workers "
              f"{parallel_cpu / n:.2f}; the serial process had {serial_cpu / serial_wall:.0%} "
              "of a core")
        print(f"cluster CPU utilisation: {parallel_cpu / (parallel_wall * cores):.0%} of {cores} "
              f"cores; runnable worker threads: max {max(samples)}, mean "
              f"{statistics.mean(samples):.2f} ({len(samples)} samples)")
        same = all(a["val_acc"] == b["val_acc"] for a, b in zip(
            sorted(serial_records, key=lambda r: r["trial"]),
            sorted(parallel_records, key=lambda r: r["trial"])))
        print(f"best validation accuracy: serial {best_so_far(serial_records):.4f}, parallel "
              f"{best_so_far(parallel_records):.4f}; every trial identical: {same}")
        if args.no_halving:
            return
        halving = dataclasses.replace(settings, halving=True, trials=len(rounds) * block)
        start = time.perf_counter()
        sh = run_search(halving, data, out / "halving", client, progress=False)
        wall = time.perf_counter() - start
    sh_cpu = sum(r["time"] for r in sh)
    final = [r for r in sh if r["epochs"] == settings.epochs]
    spent, best_at_budget = 0.0, float("-inf")
    for r in sorted(serial_records, key=lambda r: r["trial"]):  # the plain search, in order
        spent += r["time"]
        if spent > sh_cpu:
            break
        best_at_budget = max(best_at_budget, best_so_far([r]))
    print(f"successive halving: {len(sh)} runs, wall {wall:.0f} s, {sh_cpu / 60:.1f} CPU-min, "
          f"best final validation accuracy {best_so_far(final):.4f} (best at any rung "
          f"{best_so_far(sh):.4f}); plain search: {sum(r['time'] for r in serial_records) / 60:.1f}"
          f" CPU-min for {best_so_far(serial_records):.4f}, and {best_at_budget:.4f} after "
          f"{sh_cpu / 60:.1f} CPU-min")


if __name__ == "__main__":
    main()
