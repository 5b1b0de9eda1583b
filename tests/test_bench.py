"""bench/_bench.pyx: the compiled benchmark entry points run and return sane structures.

The module is not in the package: bench/_compiled.py builds it against the fastnn imported
here (about a minute, once), as the benchmark scripts do.

Tiny shapes only, and never a timing assertion (timings belong in bench/RESULTS.md): a time is only checked to be a
positive finite number.
"""
import importlib.util
import math
import os

import numpy as np
import pytest

from fastnn import MLP
from fastnn._core import _sgd

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
_spec = importlib.util.spec_from_file_location("_compiled", os.path.join(BENCH, "_compiled.py"))
_compiled = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_compiled)
_bench = _compiled.load_bench()

DTYPES = [np.float32, np.float64]


def _sane(ns):
    return isinstance(ns, float) and math.isfinite(ns) and ns > 0


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("trans", [(False, False), (True, False), (False, True)],
                         ids=["NN", "TN", "NT"])
def test_gemm_case(dtype, trans):
    run = _bench.gemm_case(3, 5, 4, *trans, dtype=dtype)
    assert _sane(run(2))
    assert _bench.gemm_flops(3, 5, 4) == 120.0


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("first", [True, False], ids=["first-layer", "hidden-layer"])
def test_layer_cases(dtype, first):
    acts = ("identity", "relu", "tanh", "sigmoid", "leaky_relu")
    cases, flops = _bench.layer_cases(4, 3, 2, acts, dtype, first_layer=first)
    expected = {"gemm_fwd", "gemm_dW", "pass"} | ({"gemm_dX"} if not first else set())
    expected |= {f"{kind}:{a}" for a in acts for kind in ("forward", "backward")}
    assert set(cases) == expected and set(flops) == expected
    for name, run in cases.items():
        assert _sane(run(3)), name
    assert flops["backward:relu"] == (1 if first else 2) * flops["forward:relu"] == \
        (1 if first else 2) * 2.0 * 4 * 3 * 2


def test_layer_cases_of_the_activations_that_keep_z():
    # GELU/SiLU: "forward" is the training pass keeping Z, "predict" the in-place one
    acts = ("gelu", "silu", "elu")
    cases, flops = _bench.layer_cases(4, 3, 2, acts, np.float32)
    assert {"predict:gelu", "predict:silu"} <= set(cases) and "predict:elu" not in cases
    for name, run in cases.items():
        assert _sane(run(3)), name


@pytest.mark.parametrize("loss,n_out", [("cross_entropy", 3), ("mse", 1), ("bce", 2)])
def test_loss_case(loss, n_out):
    assert _sane(_bench.loss_case(5, n_out, loss)(2))


def test_loss_case_rejects_unknown():
    with pytest.raises(ValueError, match="loss="):
        _bench.loss_case(5, 2, "hinge")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("setting", [("relu", "cross_entropy", "sgd"),
                                     ("tanh", "mse", "adam"), ("sigmoid", "bce", "sgd")],
                         ids=["relu-ce-sgd", "tanh-mse-adam", "sigmoid-bce-sgd"])
def test_step_cases(dtype, setting):
    act, loss, opt = setting
    sizes = [5, 4, 3, 2]
    cases, info = _bench.step_cases(sizes, act, loss, batch=3, dtype=dtype, optimizer=opt,
                                    n_rows=7)
    names = {"step", "floor", "part:gather", "part:net_loss_grad", "part:update",
             "gemm:fwd:0", "gemm:dW:0", "gemm:fwd:1", "gemm:dW:1", "gemm:dX:1",
             "gemm:fwd:2", "gemm:dW:2", "gemm:dX:2"}
    assert set(cases) == names
    for name, run in cases.items():
        assert _sane(run(4)), name           # the step wraps around the 7-row data set
    # forward + dW per layer, dX for every layer but the first
    per = [2.0 * 3 * a * b for a, b in zip(sizes[:-1], sizes[1:])]
    assert info["flops"] == pytest.approx(2 * sum(per) + sum(per[1:]))
    assert info["n_params"] == sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def test_step_cases_validates():
    with pytest.raises(ValueError, match="smaller than batch"):
        _bench.step_cases([3, 2], batch=8, n_rows=4)
    with pytest.raises(ValueError, match="at least 2"):
        _bench.step_cases([3], batch=2)
    with pytest.raises(TypeError, match="float32"):
        _bench.gemm_case(2, 2, 2, dtype=np.int32)


def test_sample_cases_structure():
    calls = []

    def run(reps):
        calls.append(reps)
        return 10.0

    out = _bench.sample_cases({"a": run, "b": run}, repeats=3, min_time=1e-6)
    assert set(out) == {"a", "b"}
    for v in out.values():
        assert v["ns"] == [10.0, 10.0, 10.0] and v["reps"] >= 1


def check_error(call, exc, *fragments):
    with pytest.raises(exc) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_benchmark_loops_check_their_buffers():
    f = np.ones
    check_error(lambda: _bench._loop_forward(f(3), f(15), f(2), f(20), 4, 3, 5, 0, 1),
                ValueError, "X has 3 elements; this case needs 12")
    check_error(lambda: _bench._loop_forward(f(12), f(15), f(2), f(20), 4, 3, 5, 0, 1),
                ValueError, "b has 2 elements; this case needs 5")
    check_error(lambda: _bench._loop_gemm(f(6), f(6), f(3), False, False, 2, 3, 3, 1),
                ValueError, "B has 6 elements; this case needs 9")
    check_error(lambda: _bench._loop_backward(f(12), f(15), f(20), f(20), f(20), f(15), f(5),
                                              f(2), 4, 3, 5, 0, 1), ValueError, "dX has 2")
    check_error(lambda: _bench._loop_pass(f(2), f(5), f(5), 1), ValueError, "dA has 2")
    check_error(lambda: _bench._loop_loss(f(8), None, np.zeros(2, np.intp), f(8), 4, 2, 4,
                                          1), ValueError, "labels has 2")
    check_error(lambda: _bench._loop_gemm(f(6), f(6), f(3), False, False, 0, 3, 3, 1),
                ValueError, "m=0; expected >= 1")
    model = MLP([4, 8, 3], seed=0, dtype=np.float64)
    spec = model._spec
    X = f((10, 4))
    check_error(lambda: _bench._loop_gather(X, np.full(10, 99, np.intp), f((4, 4)), 4, 1),
                ValueError, "order has entries outside [0, 10)")
    check_error(lambda: _bench._loop_net(spec, model.params, model.grads, X,
                                         np.zeros(10, np.intp), None, f(3), f(80), f(80), 4,
                                         1), ValueError, "acts has 3 elements")
    check_error(lambda: _bench._loop_update(spec, model.params, model.grads, f(3), f(3), 1,
                                            0.1, 1), ValueError, "s1 has 3 entries")
    check_error(lambda: _bench._loop_floor(spec, model.params, model.grads, f(40), f(110),
                                           f(110), f(3), 10, 1), ValueError, "dX has 3 elements")
    state = _bench._StepState(spec, model.params, X, None, np.zeros(10, np.intp), 4, 4,
                              _sgd.OPT_SGD, 0.1, 0)
    state.run(2)
    state.params = np.zeros(3)  # a public attribute, rebound
    check_error(lambda: state.run(1), ValueError, "params has 3 entries")
    state.params = model.params
    state.labels_batch = np.zeros(1, np.intp)
    check_error(lambda: state.run(1), ValueError, "labels_batch has 1 elements")


def test_the_fma_peak_loop_counts_its_flops():
    # 12 chains of one FMA per round on 512- or 256-bit vectors: 2 FLOPs per lane
    width = _bench.fma_width()
    assert width in (0, 256, 512)
    for dbl in (False, True):
        seconds, flops = _bench.fma_seconds(1000, dbl)
        assert seconds >= 0
        assert flops == (2 * 12 * width // (64 if dbl else 32) * 1000)
    with pytest.raises(ValueError, match="rounds=0"):
        _bench.fma_seconds(0, False)
