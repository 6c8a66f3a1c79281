"""fastzero beside PyTorch: the book's convnets built in PyTorch, timed step by step.

:func:`torch_net` builds a PyTorch ``nn.Sequential`` with the layers of a
fastzero network and a copy of its weights (so the same initialisation),
the book's dropout (``x * (rand > ratio)`` in training, ``x * (1 - ratio)``
in inference, the mask drawn by ``np.random.rand`` as the book does) and the
cross-entropy loss; a training step is ``gradient`` + Adam at the book's
hyper-parameters on both sides. PyTorch is an optional extra
(``pip install "fastzero[peers]"``).

How the two are timed (:func:`compare`): at 1 thread in one process, their
samples interleaved; at 2 or more threads each in its own process, the two
alternating for a few rounds, because PyTorch's OpenMP pool spins after each
call and would tax whatever runs next in the same process.
"""
from __future__ import annotations

import json
from collections import OrderedDict
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from .cases import BATCH, TrainState, make_net, train_step
from .flops import layers_of, network_work, step_flops
from .machine import disable_vector_tiles, vector_tiles

#: The networks compared with PyTorch.
PEER_NETS: tuple[str, ...] = ("SimpleConvNet", "DeepConvNet")
SYSTEMS: tuple[str, ...] = ("fastzero", "pytorch")
INSTALL_HINT = 'pip install "fastzero[peers]"'


def torch_missing() -> str | None:
    """Why PyTorch cannot be compared (None when it can)."""
    import importlib.util

    try:
        if importlib.util.find_spec("torch") is None:
            raise ImportError("no module named 'torch'")
    except ImportError as exc:
        return f"PyTorch is not installed ({exc}); {INSTALL_HINT} to compare with it"
    return None


def _book_dropout(ratio: float) -> Any:
    import torch

    class BookDropout(torch.nn.Module):
        """The book's Dropout: keep where ``np.random.rand() > ratio``, no rescaling in
        training; scale by ``1 - ratio`` in inference."""

        def __init__(self) -> None:
            super().__init__()
            self.ratio = ratio

        def forward(self, x):
            if not self.training:
                return x * (1.0 - self.ratio)
            keep = torch.from_numpy(np.random.rand(*x.shape) > self.ratio)
            return x * keep

    return BookDropout()


def torch_net(net: Any) -> tuple[Any, dict[str, tuple[Any, bool]]]:
    """A PyTorch copy of a fastzero network: ``(model, params)``.

    ``params`` maps each of ``net.params``' names to its PyTorch parameter and
    whether it is stored transposed (a Linear weight is (M, D), an Affine
    ``W`` (D, M)). The model's modules are named as :func:`layers_of` names
    the fastzero layers.
    """
    import torch
    from torch import nn

    names = {id(array): name for name, array in net.params.items()}
    modules: dict[str, Any] = {}
    params: dict[str, tuple[Any, bool]] = {}

    def own(array: np.ndarray) -> Any:
        return nn.Parameter(torch.from_numpy(np.array(array)))

    for name, layer in layers_of(net):
        kind = type(layer).__name__
        if kind == "Convolution":
            fn, c, fh, fw = layer.W.shape
            module = nn.Conv2d(c, fn, (fh, fw), stride=layer.stride, padding=layer.pad)
            module.weight, module.bias = own(layer.W), own(layer.b)
            params[names[id(layer.W)]] = (module.weight, False)
            params[names[id(layer.b)]] = (module.bias, False)
        elif kind == "Affine":
            d, m = layer.W.shape
            linear = nn.Linear(d, m)
            linear.weight, linear.bias = own(layer.W.T), own(layer.b)
            params[names[id(layer.W)]] = (linear.weight, True)
            params[names[id(layer.b)]] = (linear.bias, False)
            module = nn.Sequential(nn.Flatten(), linear)
        elif kind == "Relu":
            module = nn.ReLU()
        elif kind == "Sigmoid":
            module = nn.Sigmoid()
        elif kind == "Pooling":
            module = nn.MaxPool2d((layer.pool_h, layer.pool_w), layer.stride, layer.pad)
        elif kind == "Dropout":
            module = _book_dropout(layer.dropout_ratio)
        else:
            raise ValueError(f"no PyTorch counterpart for {kind} ({name})")
        modules[name] = module
    return nn.Sequential(OrderedDict(modules)).train(), params


def torch_loss(model: Any, x: Any, t: Any) -> Any:
    """The mean cross-entropy of ``model(x)`` against labels ``t``."""
    import torch.nn.functional as F

    return F.cross_entropy(model(x), t)


class TorchStep:
    """One PyTorch training step: forward, loss, backward, Adam (the book's lr, betas, eps)."""

    def __init__(self, net: Any, x: np.ndarray, t: np.ndarray) -> None:
        import torch

        self.model, self.params = torch_net(net)
        self.x, self.t = torch.from_numpy(x), torch.from_numpy(t)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.001,
                                          betas=(0.9, 0.999), eps=1e-7)

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        torch_loss(self.model, self.x, self.t).backward()
        self.optimizer.step()


def _batch(dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.random((BATCH, 1, 28, 28)).astype(dtype),
            rng.integers(0, 10, BATCH, dtype=np.int64))


def _fastzero_works(name: str, dtype: str, layers: bool) -> dict[str, Callable[[], Any]]:
    """The fastzero step and, with ``layers``, each layer's forward and backward."""
    from fastzero.optimizer import Adam

    net = make_net(name, dtype)
    x, t = _batch(dtype)
    state = TrainState(net, Adam(), x, t)
    works: dict[str, Callable[[], Any]] = {"step": lambda: train_step(state)}
    if layers:
        np.random.seed(0)
        net.gradient(x, t)  # every layer holds what its backward needs
        inputs, douts = _layer_inputs(net, x, t)
        for index, ((layer_name, layer), xi, di) in enumerate(zip(layers_of(net), inputs, douts)):
            forward = ((lambda l=layer, xi=xi: l.forward(xi, True))
                       if type(layer).__name__ == "Dropout" else (lambda l=layer, xi=xi: l.forward(xi)))
            works[f"{layer_name}.forward"] = forward
            # the first layer's as a step runs it: no gradient of the images (as PyTorch's)
            backward = layer.backward if index else getattr(layer, "_backward_params", layer.backward)
            works[f"{layer_name}.backward"] = lambda b=backward, di=di: b(di)
    return works


def _layer_inputs(net: Any, x: np.ndarray, t: np.ndarray) -> tuple[list, list]:
    """What each layer receives in a training step: its forward input and backward dout."""
    inputs, out = [], x
    for _, layer in layers_of(net):
        inputs.append(out)
        out = layer.forward(out, True) if type(layer).__name__ == "Dropout" else layer.forward(out)
    net.last_layer.forward(out, t)
    douts, dout = [], net.last_layer.backward(1)
    for _, layer in reversed(layers_of(net)):
        douts.append(dout)
        dout = layer.backward(dout)
    return inputs, douts[::-1]


def _torch_works(name: str, dtype: str, layers: bool) -> dict[str, Callable[[], Any]]:
    """The PyTorch step and, with ``layers``, each module's forward and backward
    (the backward of the first one computes no gradient of the images, as in a step)."""
    import torch

    net = make_net(name, dtype)
    x, t = _batch(dtype)
    step = TorchStep(net, x, t)
    works: dict[str, Callable[[], Any]] = {"step": step}
    if layers:
        # a model of their own: the step's Adam updates would invalidate the kept graphs
        model, _ = torch_net(net)
        current = step.x
        for index, (layer_name, module) in enumerate(model.named_children()):
            xi = current.detach().requires_grad_(index > 0)
            out = module(xi)
            wrt = ([xi] if index > 0 else []) + list(module.parameters())
            dout = torch.ones_like(out)
            works[f"{layer_name}.forward"] = lambda m=module, xi=xi: m(xi)
            if wrt:
                works[f"{layer_name}.backward"] = (
                    lambda out=out, wrt=wrt, dout=dout:
                    torch.autograd.grad(out, wrt, dout, retain_graph=True))
            current = out
    return works


def _works(system: str, name: str, dtype: str, layers: bool) -> dict[str, Callable[[], Any]]:
    return (_fastzero_works if system == "fastzero" else _torch_works)(name, dtype, layers)


def set_threads(threads: int, with_torch: bool) -> None:
    """One thread count for numba, the BLAS and (``with_torch``) PyTorch."""
    import fastzero

    fastzero.set_num_threads(threads)
    if with_torch:
        import torch

        torch.set_num_threads(threads)


def _measure(works: dict[str, Callable[[], Any]], repeat: int, min_sample: float,
             clock: Callable[[], float] = time.perf_counter) -> dict:
    from . import timing

    # settle briefly: at one thread no BLAS pool is left spinning, at more each
    # system runs in its own process
    return timing.measure(works, repeat, min_sample, backends=dict.fromkeys(works, "numba"),
                          settle=0.02, clock=clock)


_CHILD = "import sys; from fastzero.bench.peers import _child; _child(*sys.argv[1:])"


def _child(system: str, name: str, dtype: str, threads: str, layers: str, repeat: str,
           min_sample: str, vector: str) -> None:
    """In a fresh interpreter: median seconds of one system's works, printed as JSON."""
    if vector == "0":
        disable_vector_tiles()
    set_threads(int(threads), with_torch=system == "pytorch")
    works = _works(system, name, dtype, layers == "1")
    print(json.dumps(_measure(works, int(repeat), float(min_sample))))


def _in_subprocess(system: str, name: str, dtype: str, threads: int, layers: bool, repeat: int,
                   min_sample: float) -> dict[str, float]:
    argv = [system, name, dtype, str(threads), "1" if layers else "0", str(repeat), str(min_sample),
            "1" if vector_tiles() else "0"]
    proc = subprocess.run([sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{system} {name} {dtype} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_pair(name: str, dtype: str, threads: int, layers: bool = False, repeat: int = 7,
                 min_sample: float = 0.05, rounds: int = 3,
                 clock: Callable[[], float] = time.perf_counter) -> dict[str, dict[str, float]]:
    """Median seconds of fastzero's and PyTorch's works: ``{system: {work: seconds}}``.

    At 1 thread both run here, interleaved, timed on ``clock``; at more, each
    system runs in its own process, alternating for ``rounds`` rounds (the
    median over the rounds), timed on the wall clock.
    """
    if threads == 1:
        import torch

        import fastzero

        before = fastzero.get_num_threads(), torch.get_num_threads()
        set_threads(1, with_torch=True)
        try:
            works = {f"{system}:{label}": work for system in SYSTEMS
                     for label, work in _works(system, name, dtype, layers).items()}
            t = _measure(works, repeat, min_sample, clock)
        finally:
            fastzero.set_num_threads(before[0])
            torch.set_num_threads(before[1])
        return {system: {label.split(":", 1)[1]: s for label, s in t.items()
                         if label.startswith(system + ":")} for system in SYSTEMS}
    runs: dict[str, list[dict[str, float]]] = {system: [] for system in SYSTEMS}
    for _ in range(rounds):
        for system in SYSTEMS:
            runs[system].append(_in_subprocess(system, name, dtype, threads, layers, repeat,
                                               min_sample))
    return {system: {label: statistics.median(r[label] for r in results)
                     for label in results[0]} for system, results in runs.items()}


def compare(nets: Sequence[str] = PEER_NETS, dtypes: Sequence[str] = ("float64", "float32"),
            threads: int = 1, layers: bool = False, repeat: int = 7, min_sample: float = 0.05,
            rounds: int = 3, progress: Callable[[str], None] | None = None,
            clock: Callable[[], float] = time.perf_counter) -> dict:
    """fastzero beside PyTorch, as a JSON-ready report (``{"skipped": reason}`` without torch)."""
    missing = torch_missing()
    if missing:
        return {"skipped": missing}
    import torch

    from . import timing
    from .machine import gemm_rate, numba_cpu, numpy_blas
    from .report import clock_name

    if progress:
        progress(f"GEMM rate at {threads} thread(s)")
    meta = {
        "threads": threads, "batch": BATCH, "repeat": repeat,
        "rounds": rounds if threads > 1 else None,
        "blas": numpy_blas(), "numba_cpu": numba_cpu(), "torch": torch.__version__,
        "clock": clock_name(clock) if threads == 1 else clock_name(timing.WALL),
        "vector_tiles": vector_tiles(),
        "gemm_rate": {dtype: gemm_rate(dtype, threads) for dtype in dtypes},
    }
    rows, layer_rows = [], []
    for name in nets:
        forward, total = step_flops(make_net(name, "float64"), BATCH)
        for dtype in dtypes:
            if progress:
                progress(f"{name} {dtype}")
            t = measure_pair(name, dtype, threads, layers, repeat, min_sample, rounds, clock)
            rows.append({"net": name, "dtype": dtype, "flops": total, "forward_flops": forward,
                         "fastzero": t["fastzero"]["step"], "pytorch": t["pytorch"]["step"]})
            if layers:
                for work in network_work(make_net(name, "float64"), BATCH):
                    layer_rows.append({
                        "net": name, "dtype": dtype, "layer": work.name,
                        "input_shape": list(work.input_shape),
                        "forward_flops": work.forward, "backward_flops": work.backward,
                        **{f"{system}_{way}": t[system].get(f"{work.name}.{way}")
                           for system in SYSTEMS for way in ("forward", "backward")},
                    })
    report = {"meta": meta, "steps": rows}
    if layers:
        report["layers"] = layer_rows
    return report
