"""fastzero beside PyTorch (``fastzero bench --peers``): FLOP counts, the report, the
timing protocol, and the PyTorch nets equal to fastzero's (skipped without torch)."""
import json

import numpy as np
import pytest

from fastzero import bench
from fastzero.bench import peers
from fastzero.bench.cases import make_net
from fastzero.bench.flops import layers_of, network_work, step_flops
from fastzero.bench.report import format_peers


# ------------------------------------------------------------------ FLOPs


def test_step_flops_of_the_books_convnets():
    """SimpleConvNet: conv1 2*100*24*24*30*25 + affine1 2*100*4320*100 + affine2
    2*100*100*10 forward; DeepConvNet ~1.75 GFLOP forward; a step is 3x forward
    less the first layer's dx (conv1's forward once more: 86.4 and 22.6 MFLOP)."""
    assert step_flops(make_net("SimpleConvNet", "float64"), 100) == (173_000_000, 432_600_000)
    assert step_flops(make_net("DeepConvNet", "float64"), 100) == (1_754_468_000,
                                                                   5_240_824_800)
    assert step_flops(make_net("SimpleConvNet", "float64"), 1) == (1_730_000, 4_326_000)


def test_layer_work_follows_the_shapes():
    work = {w.name: w for w in network_work(make_net("DeepConvNet", "float32"), 100)}
    assert [w for w in work][:5] == ["Conv1", "Relu1", "Conv2", "Relu2", "Pool1"]
    assert work["Conv2"].input_shape == (100, 16, 28, 28)
    assert work["Conv2"].forward == 2 * 100 * 28 * 28 * 16 * 16 * 3 * 3
    assert work["Conv2"].backward == 2 * work["Conv2"].forward
    assert work["Conv1"].backward == work["Conv1"].forward  # dW only: no gradient of the images
    assert work["Conv4"].input_shape == (100, 32, 14, 14)  # pad 2: 16x16 out
    assert work["Conv5"].input_shape == (100, 32, 8, 8)
    assert work["Affine1"].input_shape == (100, 64, 4, 4)
    assert work["Affine1"].forward == 2 * 100 * 1024 * 50
    assert work["Pool3"].forward == work["Relu7"].forward == work["Dropout2"].forward == 0
    names = [name for name, _ in layers_of(make_net("SimpleConvNet", "float64"))]
    assert names == ["Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2"]


# ------------------------------------------------------------------ report


def _report(threads=1, layers=True):
    meta = {"threads": threads, "batch": 100, "repeat": 7, "rounds": 3 if threads > 1 else None,
            "blas": {"internal_api": "openblas", "version": "0.3.31", "architecture": "SkylakeX"},
            "numba_cpu": "znver4", "torch": "2.13.0+cpu",
            "gemm_rate": {"float64": 100e9, "float32": 200e9}}
    steps = [{"net": "SimpleConvNet", "dtype": "float64", "flops": 519_000_000,
              "forward_flops": 173_000_000, "fastzero": 0.0104, "pytorch": 0.0208},
             {"net": "DeepConvNet", "dtype": "float32", "flops": 5_263_404_000,
              "forward_flops": 1_754_468_000, "fastzero": 0.0526, "pytorch": 0.0263}]
    report = {"meta": meta, "steps": steps}
    if layers:
        report["layers"] = [
            {"net": "DeepConvNet", "dtype": "float32", "layer": "Conv2",
             "input_shape": [100, 16, 28, 28], "forward_flops": 361_267_200,
             "backward_flops": 722_534_400, "fastzero_forward": 0.002, "pytorch_forward": 0.004,
             "fastzero_backward": 0.008, "pytorch_backward": 0.004},
            {"net": "DeepConvNet", "dtype": "float32", "layer": "Relu2",
             "input_shape": [100, 16, 28, 28], "forward_flops": 0, "backward_flops": 0,
             "fastzero_forward": 0.0005, "pytorch_forward": 0.0004,
             "fastzero_backward": 0.0003, "pytorch_backward": 0.0002},
        ]
    return report


def test_peer_report_header_and_rows():
    lines = format_peers(_report()).splitlines()
    assert "1 thread(s), interleaved in one process" in lines[0]
    assert lines[1] == ("numpy BLAS openblas 0.3.31 (kernel SkylakeX) | numba CPU znver4 | "
                        "torch 2.13.0+cpu")
    assert "float64 100.0 GFLOP/s, float32 200.0 GFLOP/s" in lines[2]
    simple = next(line for line in lines if line.startswith("SimpleConvNet"))
    # 0.519 GFLOP in 10.4 ms: 49.9 GFLOP/s, 50 % of the float64 GEMM rate
    assert simple.split() == ["SimpleConvNet", "float64", "0.519", "10.40", "20.80", "2.00x",
                              "faster", "49.9", "(50%)", "25.0", "(25%)"]
    deep = next(line for line in lines if line.startswith("DeepConvNet  "))
    assert deep.split()[3:7] == ["52.60", "26.30", "2.00x", "slower"]
    assert deep.split()[7:9] == ["100.1", "(50%)"]
    conv2 = next(line for line in lines if line.startswith("Conv2"))
    assert conv2.split() == ["Conv2", "100x16x28x28", "0.361", "2.00", "180.6", "4.00", "90.3",
                             "8.00", "90.3", "4.00", "180.6"]
    relu2 = next(line for line in lines if line.startswith("Relu2"))
    assert relu2.split() == ["Relu2", "100x16x28x28", "0.500", "0.400", "0.300", "0.200"]


def test_peer_report_at_two_threads_says_how_it_was_measured():
    first = format_peers(_report(threads=2, layers=False)).splitlines()[0]
    assert "2 thread(s), each system in its own process, alternating, median of 3 rounds" in first
    assert "per layer" not in format_peers(_report(threads=2, layers=False))


def test_without_torch_the_comparison_says_so_and_is_skipped(monkeypatch, capsys):
    monkeypatch.setattr(peers, "torch_missing", lambda: "PyTorch is not installed")
    report = peers.compare(["SimpleConvNet"], ["float32"])
    assert report == {"skipped": "PyTorch is not installed"}
    assert bench.main(["--peers", "--quick", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == "fastzero bench --peers: skipped: PyTorch is not installed"


def test_peers_picks_nets_by_case_name(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(peers, "compare", lambda nets, dtypes, threads, layers, **kw:
                        seen.append((nets, dtypes, layers)) or {"skipped": "x"})
    assert bench.main(["--peers", "--cases", "train.SimpleConvNet", "--dtype", "float32"]) == 0
    assert bench.main(["--layers", "--dtype", "float64"]) == 0
    assert seen == [(["SimpleConvNet"], ["float32"], False),
                    (["SimpleConvNet", "DeepConvNet"], ["float64"], True)]
    with pytest.raises(SystemExit):
        bench.main(["--peers", "--cases", "conv."])


def test_one_thread_interleaves_both_systems_in_this_process(monkeypatch):
    pytest.importorskip("torch")
    from fastzero.bench import timing

    calls = []
    monkeypatch.setattr(peers, "_works", lambda system, *a: {"step": lambda: None,
                                                            "Conv1.forward": lambda: None})
    monkeypatch.setattr(peers, "set_threads", lambda threads, with_torch: None)
    real = timing.measure

    def spy(works, *args, **kwargs):
        calls.append(list(works))
        return real(works, 1, 0.0, **{**kwargs, "settle": 0.0})

    monkeypatch.setattr(timing, "measure", spy)
    t = peers.measure_pair("SimpleConvNet", "float32", threads=1, layers=True)
    assert calls == [["fastzero:step", "fastzero:Conv1.forward", "pytorch:step",
                      "pytorch:Conv1.forward"]]
    assert set(t) == {"fastzero", "pytorch"} and set(t["pytorch"]) == {"step", "Conv1.forward"}


def test_two_threads_alternate_separate_processes(monkeypatch):
    order = []

    def fake(system, name, dtype, threads, layers, repeat, min_sample):
        order.append((system, threads))
        return {"step": {"fastzero": 1.0, "pytorch": 2.0}[system] * len(order)}

    monkeypatch.setattr(peers, "_in_subprocess", fake)
    t = peers.measure_pair("DeepConvNet", "float32", threads=2, rounds=3)
    assert order == [("fastzero", 2), ("pytorch", 2)] * 3
    assert t == {"fastzero": {"step": 3.0}, "pytorch": {"step": 8.0}}  # medians of 1,3,5 / 2,4,6 x2


def test_asv_track_vs_torch_is_skipped_without_torch(monkeypatch):
    from benchmarks import bench_peers

    monkeypatch.setattr(peers, "torch_missing", lambda: "PyTorch is not installed")
    with pytest.raises(NotImplementedError, match="PyTorch is not installed"):
        bench_peers.VsTorch().setup("SimpleConvNet", "float32")


def test_asv_track_vs_torch_is_the_step_time_ratio(monkeypatch):
    from benchmarks import bench_peers

    monkeypatch.setattr(peers, "torch_missing", lambda: None)
    monkeypatch.setattr(peers, "measure_pair", lambda *a, **k: {
        "fastzero": {"step": 0.010}, "pytorch": {"step": 0.025}})
    suite = bench_peers.VsTorch()
    suite.setup("SimpleConvNet", "float64")
    assert suite.track_vs_torch("SimpleConvNet", "float64") == 2.5
    monkeypatch.setenv("FASTZERO_BENCH_FAST", "1")
    with pytest.raises(NotImplementedError):
        suite.setup("DeepConvNet", "float64")


def test_a_child_process_times_fastzero():
    t = peers._in_subprocess("fastzero", "SimpleConvNet", "float32", 2, True, 1, 0.0)
    assert t["step"] > 0 and t["Conv1.forward"] > 0 and t["Affine2.backward"] > 0


# ------------------------------------------------------------------ PyTorch


@pytest.mark.parametrize("name, n", [("SimpleConvNet", 4), ("DeepConvNet", 3)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pytorch_net_equals_fastzeros(name, n, dtype):
    """Same weights, same batch, same dropout masks: the same loss and gradients."""
    torch = pytest.importorskip("torch")
    net = make_net(name, dtype)
    model, params = peers.torch_net(net)
    assert set(params) == set(net.params)
    rng = np.random.default_rng(1)
    x, t = rng.random((n, 1, 28, 28)).astype(dtype), rng.integers(0, 10, n)
    tol = 1e-10 if dtype == "float64" else 1e-4
    np.random.seed(5)
    grads = net.gradient(x, t)
    np.random.seed(5)
    loss = peers.torch_loss(model, torch.from_numpy(x), torch.from_numpy(t))
    loss.backward()
    # the book's loss takes log(y + 1e-7): a relative ~1e-7 from the exact one
    assert loss.item() == pytest.approx(net.last_loss, rel=1e-6)
    for key, (param, transposed) in params.items():
        grad = param.grad.numpy().T if transposed else param.grad.numpy()
        assert grad.dtype == grads[key].dtype
        np.testing.assert_allclose(grad, grads[key], rtol=tol,
                                   atol=tol * float(np.max(np.abs(grads[key]))), err_msg=key)
    model.eval()  # inference: the book's dropout scales by 1 - ratio
    scores = model(torch.from_numpy(x)).detach().numpy()
    expected = net.predict(x, train_flg=False)
    np.testing.assert_allclose(scores, expected, rtol=tol, atol=tol * np.max(np.abs(expected)))


def test_pytorch_step_is_adam_with_the_books_hyperparameters():
    pytest.importorskip("torch")
    net = make_net("SimpleConvNet", "float64")
    step = peers.TorchStep(net, *peers._batch("float64"))
    group = step.optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"]) == (0.001, (0.9, 0.999), 1e-7)
    before = step.params["W1"][0].detach().clone()
    step()
    assert not np.array_equal(before.numpy(), step.params["W1"][0].detach().numpy())


def test_compare_end_to_end_at_one_thread(capsys):
    pytest.importorskip("torch")
    report = peers.compare(["SimpleConvNet"], ["float32"], threads=1, layers=True, repeat=1,
                           min_sample=0.0)
    json.dumps(report)
    (row,) = report["steps"]
    assert row["fastzero"] > 0 and row["pytorch"] > 0 and row["flops"] == 432_600_000
    assert report["meta"]["gemm_rate"]["float32"] > 1e9
    assert [r["layer"] for r in report["layers"]] == ["Conv1", "Relu1", "Pool1", "Affine1",
                                                      "Relu2", "Affine2"]
    assert all(r["fastzero_forward"] > 0 and r["pytorch_forward"] > 0 for r in report["layers"])
    text = format_peers(report)
    assert "SimpleConvNet float32, per layer" in text
