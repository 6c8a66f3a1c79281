"""Running a search on Dask (``dask.distributed``): the cluster, the trials, the results file.

Without a scheduler address :func:`dask_client` starts a ``LocalCluster`` of
worker *processes* (spawned by their nannies, one task thread each; numba's
OpenMP layer is not fork-safe and its workqueue layer is not thread-safe),
``cores // threads_per_trial`` of them, with ``NUMBA_NUM_THREADS`` set in each
worker before numba loads (Dask caps the OpenMP and BLAS threads of its
workers, not numba's). With an address it connects to an existing cluster.

:func:`run_search` sends the training data to the workers once
(``Client.scatter``), submits one task per trial (per trial and rung with
successive halving) and appends each record to ``trials.jsonl`` as soon as
its task finishes. A worker that dies mid-trial costs that trial's progress
only: the scheduler runs the task again on another worker, and its record
is written once, when the task's result arrives.
"""
from __future__ import annotations

import contextlib
import logging
import operator
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from fastzero.search.plan import SearchSettings, best_so_far, promote, rung_sizes, rungs
from fastzero.search.results import (RESULTS, ResultsFile, read_records, read_settings,
                                     write_settings)
from fastzero.search.trial import SearchData, run_trial

__all__ = ["MISSING_DASK", "require_dask", "default_workers", "local_cluster", "dask_client",
           "check_workers", "run_search"]

#: Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which fixes glibc's mmap
#: threshold: every array of 128 KiB or more is then mapped and unmapped at each training step,
#: and trials run markedly slower. None unsets it.
PRE_SPAWN_MALLOC = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
#: The LocalCluster's worker settings: no MALLOC_TRIM_THRESHOLD_, and no statistical profiler
#: (a thread that takes the GIL every 10 ms: on a loaded machine each hand-over waits for the
#: OS to schedule it, which slows every trial down).
WORKER_CONFIG = {PRE_SPAWN_MALLOC: None, "distributed.worker.profile.enabled": False}
MALLOC_ADVICE = ("on the worker hosts, put 'distributed: {nanny: {pre-spawn-environ: "
                 "{MALLOC_TRIM_THRESHOLD_: null}}}' in a Dask config file "
                 "(~/.config/dask/fastzero.yaml) before starting dask worker")

MISSING_DASK = ("fastzero search runs its trials on Dask, which is not installed: "
                "pip install 'fastzero[search]' (the optional extra 'search', dask[distributed])")


def require_dask() -> None:
    """ImportError naming the ``search`` extra unless ``dask.distributed`` imports."""
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ImportError(MISSING_DASK) from exc


def default_workers(threads_per_trial: int = 1) -> int:
    """Worker processes for this machine: ``cores // threads_per_trial`` (at least 1)."""
    from dask.system import CPU_COUNT  # the cores this process may use (cgroups, affinity)

    return max(1, CPU_COUNT // threads_per_trial)


def local_cluster(threads_per_trial: int = 1, workers: int | None = None,
                  dashboard_address: str | None = ":8787") -> Any:
    """A ``LocalCluster`` of ``workers`` processes (default :func:`default_workers`),
    each running one trial at a time on ``threads_per_trial`` numba threads."""
    require_dask()
    from distributed import LocalCluster

    import dask

    threads = str(threads_per_trial)
    env = {"NUMBA_NUM_THREADS": threads, "OMP_NUM_THREADS": threads,
           "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    with dask.config.set(WORKER_CONFIG):  # read by each nanny as it starts
        return LocalCluster(n_workers=workers or default_workers(threads_per_trial),
                            threads_per_worker=1, processes=True, env=env,
                            dashboard_address=dashboard_address, silence_logs=logging.ERROR)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, threads_per_trial: int = 1,
                workers: int | None = None, dashboard_address: str | None = ":8787") -> Iterator[Any]:
    """A Dask ``Client``: of the cluster at ``scheduler``, else of a new :func:`local_cluster`
    (closed on exit)."""
    require_dask()
    from distributed import Client

    if scheduler is not None:
        with Client(scheduler, timeout="30s") as client:
            yield client
        return
    with local_cluster(threads_per_trial, workers, dashboard_address) as cluster, \
            Client(cluster) as client:
        yield client


def _probe_worker(dask_worker: Any) -> dict[str, Any]:
    import os

    import numba
    from threadpoolctl import threadpool_info

    return {"numba_threads": numba.config.NUMBA_NUM_THREADS,
            "blas_threads": max((p["num_threads"] for p in threadpool_info()
                                 if p["user_api"] == "blas"), default=1),
            "task_threads": dask_worker.state.nthreads,
            "cores": len(os.sched_getaffinity(0)), "host": os.uname().nodename,
            "malloc_trim": os.environ.get("MALLOC_TRIM_THRESHOLD_")}


def check_workers(client: Any, threads_per_trial: int) -> list[str]:
    """Warnings for hosts whose workers may run more threads than they have cores
    (task threads x trial threads), for workers whose numba runs fewer threads than
    asked, and for workers started with Dask's MALLOC_TRIM_THRESHOLD_."""
    info = client.run(_probe_worker)
    warnings, per_host = [], {}
    for address, w in info.items():
        if w["numba_threads"] < threads_per_trial:
            warnings.append(f"worker {address} has NUMBA_NUM_THREADS={w['numba_threads']}: "
                            f"its trials run on {w['numba_threads']} threads, not {threads_per_trial}")
        if w["malloc_trim"] is not None:
            warnings.append(f"worker {address} has MALLOC_TRIM_THRESHOLD_={w['malloc_trim']}, "
                            f"which slows training about 1.5x: {MALLOC_ADVICE}")
        used = per_host.setdefault(w["host"], [0, w["cores"]])
        used[0] += w["task_threads"] * threads_per_trial
    for host, (threads, cores) in per_host.items():
        if threads > cores:
            warnings.append(f"host {host}: the workers run up to {threads} threads on {cores} cores "
                            "(start each dask worker with --nthreads 1 and NUMBA_NUM_THREADS set)")
    return warnings


def _check_directory(out: Path, settings: SearchSettings, resume: bool) -> list[dict[str, Any]]:
    """The records already in ``out`` (resume) after checking they belong to ``settings``."""
    results = out / RESULTS
    if not resume:
        if results.exists():
            raise FileExistsError(f"{out} already holds a search ({RESULTS}); pass --resume to "
                                  "run its missing trials, or choose another --out")
        return []
    saved = read_settings(out)
    mine = settings.to_dict()
    differ = [k for k in mine if k != "trials" and saved.get(k) != mine[k]]
    if differ:
        raise ValueError(f"--resume: {out} holds a search with other settings "
                         f"({', '.join(f'{k}={saved.get(k)!r}' for k in differ)})")
    return read_records(results)


def _trial_record(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return run_trial(*args, **kwargs)[0]


def _error_record(settings: SearchSettings, trial: int, epochs: int, exc: BaseException) -> dict:
    return {"trial": trial, "params": settings.params(trial), "seed": settings.trial_seed(trial),
            "epochs": epochs, "status": "error", "error": f"{type(exc).__name__}: {exc}"}


def run_search(settings: SearchSettings, data: SearchData, out: str | Path, client: Any,
               resume: bool = False, progress: bool = True) -> list[dict[str, Any]]:
    """Run the search's missing trials on ``client``'s cluster; returns every record of
    ``out/trials.jsonl`` (the earlier ones first when resuming).

    Raises FileExistsError if ``out`` holds a search and ``resume`` is false,
    ValueError if ``resume`` finds one with other settings (``trials`` may grow).
    """
    from distributed import as_completed
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = _check_directory(out, settings, resume)
    write_settings(out, settings.to_dict())
    [data_future] = client.scatter([data], broadcast=True)
    token = uuid.uuid4().hex[:8]
    epochs_per_rung, sizes = rungs(settings), rung_sizes(settings)
    total = sum(sizes)
    done = sum(1 for r in records if r["status"] in ("ok", "diverged"))
    with ResultsFile(out / RESULTS) as results, \
            tqdm(total=total, initial=min(done, total), unit="trial", disable=not progress,
                 dynamic_ncols=True) as bar:
        def finished(record: dict[str, Any]) -> None:
            record["finished"] = time.time()
            results.append(record)
            records.append(record)
            bar.update(1)
            best = best_so_far(records)
            if best > float("-inf"):
                bar.set_postfix_str(f"best val acc {best:.4f}", refresh=True)

        members, states, previous = list(range(settings.trials)), {}, {}
        for k, (epochs, size) in enumerate(zip(epochs_per_rung, sizes)):
            at_rung = {r["trial"]: r for r in records
                       if r["epochs"] == epochs and r["status"] in ("ok", "diverged")}
            if k > 0:
                members = promote([previous[i] for i in members if i in previous], size)
                states = {i: states[i] for i in members if i in states}
            keep_state = k + 1 < len(epochs_per_rung)
            futures = {}
            for i in members:
                if i in at_rung:
                    continue
                key = f"trial-{i}-{epochs}ep-{token}"
                args = (settings.config, i, settings.params(i), settings.trial_seed(i),
                        data_future, epochs)
                if keep_state:
                    both = client.submit(run_trial, *args, state=states.get(i), keep_state=True,
                                         key=key + "-state", pure=False)
                    states[i] = client.submit(operator.itemgetter(1), both, pure=False,
                                              key=key + "-keep")
                    fut = client.submit(operator.itemgetter(0), both, key=key, pure=False)
                else:
                    fut = client.submit(_trial_record, *args, state=states.get(i), key=key,
                                        pure=False)
                futures[fut] = i
            for fut in as_completed(list(futures)):
                try:
                    record = fut.result()
                except Exception as exc:  # a crash (not a divergence): keep searching
                    record = _error_record(settings, futures[fut], epochs, exc)
                    states.pop(futures[fut], None)
                finished(record)
                if record["status"] in ("ok", "diverged"):
                    at_rung[record["trial"]] = record
                fut.release()
            previous = at_rung
    return read_records(out / RESULTS)
