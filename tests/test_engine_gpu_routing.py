"""shc.evaluate / shc.search route CUDA torch tensors to the GPU path (checked on CPU with fakes).

The fake tensors only look like torch CUDA tensors (their class lives in a module named torch.*, is_cuda is
True), and fakes of metrics.evaluate_cuda and shc.kernels.hamming.search_cuda record the calls, so neither torch
nor a GPU is needed.
"""
import sys
import types

import numpy as np
import pytest

import shc.metrics as metrics

FakeCudaTensor = type("Tensor", (), {"__module__": "torch.fake", "is_cuda": True,
                                     "__init__": lambda self, arr: setattr(self, "arr", np.asarray(arr)),
                                     "shape": property(lambda self: self.arr.shape),
                                     "dtype": property(lambda self: self.arr.dtype),
                                     "device": "cuda:0",
                                     "to": lambda self, device: self,
                                     "reshape": lambda self, *shape: FakeCudaTensor(self.arr.reshape(*shape))})


@pytest.fixture
def fake_kernels(monkeypatch):
    calls = []
    module = types.ModuleType("shc.kernels.hamming")
    monkeypatch.setattr(metrics, "evaluate_cuda",
                        lambda *args, **kwargs: calls.append(("evaluate_cuda", args, kwargs)) or "gpu report")
    module.search_cuda = lambda *args, **kwargs: calls.append(("search_cuda", args, kwargs)) or "gpu result"
    monkeypatch.setitem(sys.modules, "shc.kernels.hamming", module)
    monkeypatch.delenv("SHC_DISABLE_TRITON", raising=False)
    return calls


def _data(Q=3, N=10, q=16):
    rng = np.random.default_rng(0)
    return (rng.choice([-1, 1], (Q, q)), rng.choice([-1, 1], (N, q)), rng.integers(0, 3, Q), rng.integers(0, 3, N))


def test_cuda_codes_go_to_evaluate_cuda(fake_kernels):
    qc, dc, ql, dl = _data()
    tq, td, tql, tdl = map(FakeCudaTensor, (qc, dc, ql, dl))
    out = metrics.evaluate(tq, td, tql, tdl, topk=(5, "all"), ties="expected", radius=1, pr_ranks=[1, 2])
    assert out == "gpu report"
    [(name, args, kwargs)] = fake_kernels
    assert name == "evaluate_cuda" and args == (tq, td, tql, tdl)
    assert kwargs == {"topk": (5, "all"), "ties": "expected", "radius": 1, "pr_ranks": [1, 2]}


def test_label_vectors_as_one_row_or_column_reach_the_gpu_as_class_ids(fake_kernels):
    """1 x Q / N x 1 labels (how .mat files hold vectors) are 1-D class ids on the GPU path too, as on the CPU."""
    qc, dc, ql, dl = _data()
    metrics.evaluate(FakeCudaTensor(qc), FakeCudaTensor(dc), FakeCudaTensor(ql[None, :]), FakeCudaTensor(dl[:, None]))
    [(_, args, _)] = fake_kernels
    np.testing.assert_array_equal(args[2].arr, ql)
    np.testing.assert_array_equal(args[3].arr, dl)


def test_cuda_codes_go_to_search_cuda_with_k_clipped(fake_kernels):
    qc, dc, _, _ = _data(N=10)
    tq, td = FakeCudaTensor(qc), FakeCudaTensor(dc)
    assert metrics.search(tq, td, 50) == "gpu result"
    assert fake_kernels == [("search_cuda", (tq, td, 10), {})]


def test_arguments_still_checked_before_routing(fake_kernels):
    qc, dc, ql, dl = _data()
    with pytest.raises(ValueError, match="ties"):
        metrics.evaluate(FakeCudaTensor(qc), FakeCudaTensor(dc), ql, dl, ties="random")
    with pytest.raises(ValueError, match="k must be"):
        metrics.search(FakeCudaTensor(qc), FakeCudaTensor(dc), 0)
    assert fake_kernels == []


@pytest.mark.parametrize("case", ["disabled", "cpu arrays"])
def test_cpu_engine_when_disabled_or_not_cuda(fake_kernels, monkeypatch, case):
    qc, dc, ql, dl = _data()
    if case == "disabled":
        monkeypatch.setenv("SHC_DISABLE_TRITON", "1")
        # is_cuda but not convertible by the CPU path: the engine must not even try the GPU
        assert metrics._use_gpu(FakeCudaTensor(qc), FakeCudaTensor(dc), None) is False
    report = metrics.evaluate(qc, dc, ql, dl, topk=(5,))
    idx, _ = metrics.search(qc, dc, 4)
    assert fake_kernels == [] and 0.0 <= report.mAP[5] <= 1.0 and idx.shape == (3, 4)


def test_packbits_codes_with_bits_stay_on_cpu_engine(fake_kernels):
    qc, dc, _, _ = _data()
    assert metrics._use_gpu(FakeCudaTensor(qc), FakeCudaTensor(dc), 16) is False
    assert metrics._use_gpu(FakeCudaTensor(qc), dc, None) is False  # mixed: both sides must be on the GPU
