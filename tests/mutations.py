"""Mutation check of the guarantees in docs/guarantees.md: each named mutation
breaks one promise in a copy of the repository, and the tests named beside it
must then fail. A guarantee whose tests still pass against its mutant rests on
a test that cannot fail.

    python tests/mutations.py --list          # the mutations, one a line
    python tests/mutations.py                 # run them all (a few minutes on 2 cores)
    python tests/mutations.py sigmoid-textbook atomic-write-deletes-first

Each mutation replaces one exact snippet of one file; a snippet that is no
longer found (the code moved on) is reported as STALE, and the run fails, so
the list is kept in step with the code. The copy lives in a fixed directory
with its own numba cache, and unchanged files keep their times, so only the
mutated module recompiles; two runs at once need different ``--work`` folders.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]


class Mutation(NamedTuple):
    name: str
    guarantee: str
    path: str
    old: str | tuple[str, ...]  # one snippet, or several replaced together by ``new``'s
    new: str | tuple[str, ...]
    tests: tuple[str, ...]

    def edits(self) -> list[tuple[str, str]]:
        if isinstance(self.old, str):
            return [(self.old, self.new)]
        return list(zip(self.old, self.new))


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "pickle-calls-what-it-names", "Loading a file never runs code from it, never crashes",
        "fastzero/_restricted_pickle.py",  # the admitted globals called as pickle would
        ("            return _GLOBALS[(module, name)]",
         "    dispatch[pickle.REDUCE[0]] = load_reduce",
         "    dispatch[pickle.BUILD[0]] = load_build"),
        ("            return pickle._Unpickler.find_class(self, module, name)",
         "    dispatch[pickle.REDUCE[0]] = pickle._Unpickler.load_reduce",
         "    dispatch[pickle.BUILD[0]] = pickle._Unpickler.load_build"),
        ("tests/test_hostile_files.py::test_object_array_over_attacker_bytes_is_refused_without_a_crash",
         "tests/test_hostile_files.py::test_crafted_pickles_from_the_admitted_globals_never_crash_the_reader"),
    ),
    Mutation(
        "npz-trusts-the-npy-header", "Lying size fields do not allocate",
        "fastzero/_bounded_npz.py",
        "    if declared.nbytes != info.file_size - header_bytes:", "    if False:",
        ("tests/test_hostile_files.py::test_npz_member_with_a_lying_header_is_refused_without_using_the_memory",),
    ),
    Mutation(
        "atomic-write-deletes-first", "Nothing half-written ever appears under a final name",
        "fastzero/params_io.py",
        '    try:\n        with open(tmp, "xb") as f:',
        '    with contextlib.suppress(FileNotFoundError):\n        os.unlink(path)\n'
        '    try:\n        with open(tmp, "xb") as f:',
        ("tests/test_params_io.py::test_failed_write_leaves_the_old_file_intact",
         "tests/test_checkpoint_faults.py::test_sigkill_at_random_moments_never_breaks_the_checkpoint"),
    ),
    Mutation(
        "history-json-not-atomic", "Nothing half-written ever appears under a final name",
        "fastzero/cli.py",
        "    with atomic_write(path) as f:\n        f.write(json.dumps(data, indent=1).encode())",
        "    with open(path, \"wb\") as f:\n        f.write(json.dumps(data, indent=1).encode())",
        ("tests/test_cli.py::test_history_json_is_written_atomically",),
    ),
    Mutation(
        "run-dir-not-locked", "One training run per output directory",
        "fastzero/_rundir.py",
        "            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", "            pass",
        ("tests/test_cli.py::test_a_second_run_into_a_locked_out_is_refused_naming_the_holder",
         "tests/test_cli.py::test_the_lock_is_held_for_the_whole_run"),
    ),
    Mutation(
        "resume-takes-contradicting-flags", "A checkpoint carries its run's settings",
        "fastzero/cli.py",
        "        if recorded and dest in RUN_DEFAULTS", "        if False and dest in RUN_DEFAULTS",
        ("tests/test_cli.py::test_resume_refuses_a_flag_that_contradicts_the_run",),
    ),
    Mutation(
        "ctrl-c-interrupts-mid-step", "Ctrl-C loses at most the current step",
        "fastzero/trainer.py",
        "        signal.signal(signal.SIGINT, request_stop)", "        pass",
        ("tests/test_trainer.py::test_ctrl_c_without_a_checkpoint_path_stops_after_the_step",
         "tests/test_trainer.py::test_ctrl_c_saves_a_checkpoint_mid_epoch_and_resuming_is_bit_exact"),
    ),
    Mutation(
        "trainer-batches-unseeded", "np.random.seed alone makes a Trainer run reproducible",
        "fastzero/trainer.py",
        "            self.rng = np.random.default_rng(np.random.randint(0, 2**63 - 1, dtype=np.int64))",
        "            self.rng = np.random.default_rng()",
        ("tests/test_trainer.py::test_np_random_seed_alone_makes_a_run_reproducible",),
    ),
    Mutation(
        "affine-row-computed-twice", "The numba backend computes what the NumPy reference computes",
        "fastzero/kernels/numba/dense.py",  # a part's last, partial row of dx taken whole
        "        a, b = min(lo, units) // d, min(hi, units) // d",
        "        a, b = min(lo, units) // d, -(-min(hi, units) // d)",
        ("tests/test_numba_kernels.py::test_affine_shares_every_row_out_once",),
    ),
    Mutation(
        "affine-input-unchecked", "Bad input is refused with a message you can act on",
        "fastzero/layers.py",
        "        if x[0].size != d:\n            raise ValueError(\n                f\"Affine: expected input",
        "        if False:\n            raise ValueError(\n                f\"Affine: expected input",
        ("tests/test_bad_input.py::test_wrong_shape_names_layer_expected_and_received",),
    ),
    Mutation(
        "star-import-without-np", "A book script runs with its imports swapped",
        "fastzero/optimizer.py",
        '"Adam", "np"]', '"Adam"]',
        ("tests/test_book_scripts.py::test_star_import_gives_every_name_the_books_module_gives",),
    ),
    Mutation(
        "batchnorm-without-eps", "Batch normalisation of a constant or huge column is finite",
        "fastzero/kernels/numba/norm.py",
        "        sd[j] = np.sqrt(var[j] + eps)", "        sd[j] = np.sqrt(var[j])",
        ("tests/test_numerics.py::test_batchnorm_of_constant_and_huge_input_is_finite",),
    ),
    Mutation(
        "checkpoint-order-unchecked", "A truncated, corrupt, foreign or inconsistent checkpoint is refused whole",
        "fastzero/checkpoint.py",  # a batch order that is not a permutation taken as it is
        "    if order is not None and not _is_permutation(order, trainer.train_size):",
        "    if False:",
        ("tests/test_checkpoint_faults.py::test_corrupt_checkpoint_is_refused_naming_the_file_and_changes_nothing",),
    ),
    Mutation(
        "cli-shows-tracebacks", "The command line reports a refused file in one line",
        "fastzero/cli.py",
        "    except (OSError, ValueError, FloatingPointError) as exc:",
        "    except FloatingPointError as exc:",
        ("tests/test_hostile_files.py::test_cli_reports_refused_files_as_a_one_line_error",),
    ),
    Mutation(
        "pkl-written-as-npz", ".pkl files are the book's format",
        "fastzero/params_io.py",
        "    if os.path.splitext(os.fspath(file_name))[1].lower() not in PICKLE_SUFFIXES:",
        "    if True:",
        ("tests/test_params_io.py::test_pkl_name_writes_the_plain_pickle_the_books_load_params_reads",),
    ),
    Mutation(
        "checkpoint-drops-buffers", "Checkpoints keep every layer's state",
        "fastzero/checkpoint.py",
        '        arrays[f"buffer.{name}"] = value', "        pass",
        ("tests/test_trainer_state.py::test_resumed_run_keeps_the_running_statistics",),
    ),
    Mutation(
        "one-knob-misses-blas", "One knob sets numba's and BLAS's threads",
        "fastzero/_threads.py",
        '    threadpool_limits(limits=n, user_api="blas")', "    pass",
        ("tests/test_threads.py::test_set_num_threads_limits_numba_and_blas",),
    ),
    Mutation(
        "use-backend-process-wide", "use_backend is per thread and per asyncio task",
        "fastzero/_backend.py",
        "    token = _override.set(_check_name(name))",
        "    global _default\n    token = _override.set(None)\n    _default = _check_name(name)",
        ("tests/test_backend.py::test_use_backend_blocks_of_two_threads_overlapping_do_not_leak",),
    ),
    Mutation(
        "window-larger-than-input", "No numba kernel is reachable out of bounds from the public API",
        "fastzero/_validate.py",
        "    if filter_h > h or filter_w > w:", "    if False:",
        ("tests/test_bad_input.py::test_window_larger_than_padded_input",
         "tests/test_boundscheck.py::test_the_public_layer_refuses_the_bad_input_before_any_kernel"),
    ),
    Mutation(
        "cli-takes-negative-sizes", "Bad options are refused up front",
        "fastzero/cli.py",
        '_positive_int = _arg_type(int, lambda v: v >= 1, "a positive integer")',
        '_positive_int = _arg_type(int, lambda v: True, "a positive integer")',
        ("tests/test_cli.py::test_bad_numbers_are_refused_up_front",),
    ),
    Mutation(
        "trainer-seed-skips-np-random", "Same seed, same thread count: the same numbers",
        "fastzero/trainer.py",  # dropout draws from np.random, no longer seeded
        "            self.rng = np.random.default_rng(seed)\n            np.random.seed(seed)",
        "            self.rng = np.random.default_rng(seed)",
        ("tests/test_trainer.py::test_same_seed_same_run_different_seed_different_run",),
    ),
    Mutation(
        "disable-jit-guards-plain-functions", "NUMBA_DISABLE_JIT=1 runs every kernel as Python",
        "fastzero/kernels/numba/_jit.py",
        '    # without a cache directory the dispatcher has a NullCache: nothing to guard.\n'
        '    cache = getattr(dispatcher, "_cache", None)',
        '    # without a cache directory the dispatcher has a NullCache: nothing to guard.\n'
        "    cache = dispatcher._cache",
        ("tests/test_runtime_modes.py::test_disable_jit_runs_every_kernel_family_with_the_compiled_results",),
    ),
    Mutation(
        "no-cache-is-an-error", "No writable cache is not an error",
        "fastzero/kernels/numba/_jit.py",
        '        if "no locator available" not in str(exc):', "        if True:",
        ("tests/test_install_readonly.py::test_no_writable_cache_anywhere_compiles_without_a_cache_after_one_warning",),
    ),
    Mutation(
        "search-draws-from-the-clock", "A trial's numbers depend only on (seed, trial index)",
        "fastzero/search/space.py",
        "    rng = np.random.default_rng(np.random.SeedSequence([seed, trial, 0]))",
        "    rng = np.random.default_rng()",
        ("tests/test_search.py::test_trial_values_follow_from_seed_and_index_only",),
    ),
    Mutation(
        "sigmoid-textbook", "Sigmoid never overflows",
        "fastzero/kernels/numba/activation.py",
        "            e = np.exp(x[i])\n            out[i] = e / (one + e)",
        "            out[i] = one / (one + np.exp(-x[i]))",
        ("tests/test_numba_kernels.py::test_sigmoid_saturates_exactly_and_keeps_its_tail",
         "tests/test_numerics.py::test_numba_sigmoid_keeps_the_subnormal_tail"),
    ),
    Mutation(
        "softmax-without-max", "Softmax and cross-entropy stay finite for huge logits",
        "fastzero/kernels/numba/loss.py",
        "            e = np.exp(row[k] - top)", "            e = np.exp(row[k])",
        ("tests/test_numerics.py::test_softmax_of_huge_logits_is_finite_and_exact",),
    ),
    Mutation(
        "divergence-keeps-poisoned-buffers", "NaN and inf: a diverging step changes nothing",
        "fastzero/trainer.py",
        "                np.copyto(value, buffers[name])", "                pass",
        ("tests/test_trainer_state.py::test_diverging_step_leaves_the_running_statistics_alone",),
    ),
    Mutation(
        "mnist-skips-checksum", "MNIST files are verified by SHA-256",
        "fastzero/datasets/mnist.py",
        "        if digest != sha256:", "        if False:",
        ("tests/test_datasets.py::test_checksum_mismatch_names_the_file",),
    ),
    Mutation(
        "mnist-copy-by-payload-name", "MNIST files are verified by SHA-256",
        "fastzero/datasets/mnist.py",  # the copy named by the expected payload, not by the file read
        "        copy = _copy_name(f) if compressed and sha256 in _PUBLISHED else None",
        "        copy = sha256 if compressed and sha256 in _PUBLISHED else None",
        ("tests/test_datasets.py::test_a_changed_file_is_never_answered_by_the_old_copy",),
    ),
    Mutation(
        "mnist-copy-unverified", "MNIST files are verified by SHA-256",
        "fastzero/datasets/mnist.py",
        "    return raw if hashlib.sha256(raw).hexdigest() == sha256 else None", "    return raw",
        ("tests/test_datasets.py::test_a_wrong_copy_is_ignored_and_replaced",),
    ),
    Mutation(
        "named-data-dir-created", "a directory the user names is never created",
        "fastzero/datasets/mnist.py",
        "    if named and not directory.is_dir():", "    if False:",
        ("tests/test_datasets.py::test_a_named_data_dir_that_does_not_exist_is_not_created",),
    ),
    Mutation(
        "nesterov-old-formula", "The book's current code is the reference (Nesterov)",
        "fastzero/kernels/numba/optim.py",  # the velocity updated before the parameter step
        "        vi = v[i]\n        param[i] += momentum_sq * vi\n        param[i] -= lr_ahead * grad[i]\n"
        "        vi *= momentum\n        vi -= lr * grad[i]\n",
        "        vi = v[i]\n        vi *= momentum\n        vi -= lr * grad[i]\n"
        "        param[i] += momentum_sq * vi\n        param[i] -= lr_ahead * grad[i]\n",
        ("tests/test_optimizer.py::test_nesterov_is_the_books_current_update",),
    ),
    Mutation(
        "slices-leave-blas-threaded", "Every matrix product runs with single-threaded BLAS",
        "fastzero/kernels/numba/_slices.py",
        "            for lib, _ in _restore:\n                lib.set_num_threads(1)",
        "            for lib, _ in _restore:\n                pass",
        ("tests/test_slices.py::test_convolution_products_run_on_the_slice_threads_with_single_threaded_blas",
         "tests/test_slices.py::test_both_affine_products_run_on_the_slice_threads_with_single_threaded_blas"),
    ),
    Mutation(
        "cache-lock-noop", "Concurrent first use is safe (the cache lock)",
        "fastzero/kernels/numba/_jit.py",
        "            fcntl.flock(fd, mode)\n            yield", "            yield",
        ("tests/test_numba_cache.py::test_two_processes_compile_different_signatures_at_once",),
    ),
    Mutation(
        "no-tbb", "A process forked after any kernel computes normally (TBB layer)",
        "fastzero/kernels/_threading_layer.py",
        "            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)", "            pass",
        ("tests/test_threads.py::test_numba_runs_on_tbb_even_when_numba_starts_its_threads_first",
         "tests/test_fork.py::test_fork_child_and_fork_pool_after_a_kernel_family"),
    ),
)


def _copy_tree(destination: Path) -> None:
    """The tracked files of the repository into ``destination``, times kept."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source, target = ROOT / name, destination / name
        if not source.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.stat().st_mtime != source.stat().st_mtime \
                or target.read_bytes() != source.read_bytes():
            shutil.copy2(source, target)


def _pytest(tree: Path, work: Path, tests: tuple[str, ...]) -> int:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(work / "numba-cache"), PYTHONPATH=str(tree))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           *tests], cwd=tree, env=env, capture_output=True).returncode


def run(mutation: Mutation, work: Path) -> str:
    """``caught``, ``SURVIVED`` or ``STALE`` for one mutation."""
    tree = work / "tree"
    _copy_tree(tree)
    target = tree / mutation.path
    mutant = (ROOT / mutation.path).read_text()
    for old, new in mutation.edits():
        if mutant.count(old) != 1:
            return "STALE"
        mutant = mutant.replace(old, new)
    target.write_text(mutant)
    try:
        code = _pytest(tree, work, mutation.tests)
    finally:
        shutil.copy2(ROOT / mutation.path, target)
    return "caught" if code == 1 else ("SURVIVED" if code == 0 else f"ERROR (pytest exit {code})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "fastzero-mutations",
                        help="where the mutated copy and its numba cache live")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    if args.list:
        for m in chosen:
            print(f"{m.name:36} {m.guarantee}  [{m.path}]")
        return 0
    _copy_tree(args.work / "tree")
    baseline = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
    if _pytest(args.work / "tree", args.work, baseline) != 0:
        print("the named tests fail on the unmutated code; fix them first", file=sys.stderr)
        return 2
    failed = 0
    for m in chosen:
        start = time.perf_counter()
        verdict = run(m, args.work)
        failed += verdict != "caught"
        print(f"{verdict:8} {m.name:36} {time.perf_counter() - start:6.1f} s  {m.guarantee}",
              flush=True)
    print(f"{len(chosen) - failed} of {len(chosen)} mutations caught")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
