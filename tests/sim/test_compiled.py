"""The torch backend with its steps compiled (``torch-compile``) computes what the eager one does,
and falls back to eager, saying so once, where torch cannot compile (issue 19).

On CPU, torch.compile generates C++ and needs a C compiler; the comparison skips without one.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from tinysnn.config import EncodingConfig
from tinysnn.encoding import make_generator, poisson
from tinysnn.sim import Simulator
from tinysnn.sim import torch_backend as TB

from .test_equivalence import _images, _pair

CAN_COMPILE = hasattr(torch, "compile") and (shutil.which("cc") or shutil.which("gcc")) is not None


@pytest.fixture
def fresh_compiled_steps(monkeypatch):
    """Each test starts without compiled steps and leaves none behind for the others."""
    monkeypatch.setattr(TB, "_compiled", {})


def _train_and_infer(backend: str, pops, enc: EncodingConfig):
    sim = Simulator(pops, enc, backend=backend)
    g, imgs = make_generator(0), _images(8, 50)
    counts = [sim.train_sample(imgs[k], k, train=poisson(imgs[k], enc, g)) for k in range(3)]
    stats = [sim.last_stats]
    for batch in (6, 4):  # a second batch size, as the last batch of a test set has
        counts.append(sim.infer(imgs[:batch], 2, trains=poisson(imgs[:batch], enc, g)))
        stats.append(sim.last_stats)
    return counts, stats


@pytest.mark.skipif(not CAN_COMPILE, reason="torch.compile on CPU needs torch >= 2 and a C compiler (cc)")
def test_compiled_steps_give_the_eager_spikes_weights_and_thresholds(fresh_compiled_steps) -> None:
    # tinySNN with ITQ and stochastic rounding: every path of a step (streams, quantization, learning
    # at and between the update times) goes through the compiled function
    eager, compiled = _pair("tinysnn", [30, 20], "weights=Q1.7,vmem=Q9.6,vth=Q9.6", rounding=("stochastic",))
    enc = EncodingConfig(time_steps=40)
    ce, se = _train_and_infer("torch", eager, enc)
    cc, sc = _train_and_infer("torch-compile", compiled, enc)
    assert TB._compiled.get("cpu") is not None, "the steps ran uncompiled"
    assert sum(int(c.sum()) for c in ce) > 20  # the comparison exercised spikes
    for k, (a, b) in enumerate(zip(ce, cc)):
        assert torch.equal(a, b), f"spike counts differ in call {k}"
    for a, b in zip(se, sc):
        assert torch.equal(a, b)
    assert torch.equal(eager.weights, compiled.weights)
    assert torch.equal(eager.theta, compiled.theta)


def _assert_fallback_counts_equal_eager(variant: str) -> None:
    eager, fallback = _pair(variant, [20])
    enc = EncodingConfig(time_steps=30)
    ce, _ = _train_and_infer("torch", eager, enc)
    cf, _ = _train_and_infer("torch-compile", fallback, enc)
    assert all(torch.equal(a, b) for a, b in zip(ce, cf))


def test_without_torch_compile_the_steps_run_eagerly_and_say_so(
    fresh_compiled_steps, monkeypatch, capsys
) -> None:
    monkeypatch.delattr(torch, "compile", raising=False)  # as torch 1.13 (Jetson images), which has none
    _assert_fallback_counts_equal_eager("diehl_cook")
    err = capsys.readouterr().err
    assert err.count("has no torch.compile: the torch backend runs uncompiled") == 1


def test_a_failed_compilation_falls_back_to_eager_once(fresh_compiled_steps, monkeypatch, capsys) -> None:
    def broken(fn, **kwargs):
        def fails(*args, **kw):
            raise RuntimeError("no C++ compiler found\nsecond line")

        return fails

    monkeypatch.setattr(torch, "compile", broken, raising=False)
    _assert_fallback_counts_equal_eager("tinysnn")
    err = capsys.readouterr().err
    assert err.count("torch.compile failed (RuntimeError: no C++ compiler found)") == 1
    assert TB._compiled == {"cpu": None}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("quant", [None, "weights=Q1.7,vmem=Q9.6,vth=Q9.6"])
def test_cuda_time_loop_never_waits_for_the_device(quant) -> None:
    # torch raises on any host synchronization while the debug mode is "error": the test fails then
    gpu = _pair("tinysnn", [30, 20], quant, rounding=("stochastic",))[0].to("cuda")
    enc = EncodingConfig(time_steps=40)
    train = poisson(_images(1, 50)[0], enc, make_generator(0)).cuda()[:, None, :]
    win = TB._window(gpu, enc, 50, 1, learn=True, track=True, sample_seeds=[0])
    st = TB._initial_state(win, 1)
    changes = TB._weight_change_steps(gpu, 40)
    steps = torch.arange(41, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for t in range(40):
            st = TB._step(win, st, train[t], steps[t], changes[t])
    finally:
        torch.cuda.set_sync_debug_mode("default")
