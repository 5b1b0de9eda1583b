"""Flushing subnormals to zero (fastnn.runtime.fpmode): what is flushed, what is kept, the caller's
floating-point mode afterwards, and the distance to the NumPy reference."""
import os
import platform
import signal
import threading

import numpy as np
import pytest

import fastnn
from fastnn._core import _network, _reference as ref
from fastnn.runtime import fpmode
from fastnn.nn.model import MLP
from fastnn.optim.optimizers import SGD, Adam
from fastnn.training.trainer import TrainingDiverged, fit

DTYPES = [np.float32, np.float64]
X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")
needs_switch = pytest.mark.skipif(not fpmode.supported(),
                                  reason="no flush-to-zero switch on this CPU (setting is a no-op)")


def _subnormal(a):
    """Number of subnormal entries of a float array."""
    a = np.asarray(a)
    return int(((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)).sum())


def _control(mode):
    # x86: bits 0-5 of MXCSR are sticky exception flags that any float operation (Python's
    # own included) may raise between two reads; the mode is everything else
    return mode & ~0x3F if X86 else mode


def _opt_dict(opt, kind):
    return dict(kind=kind, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov,
                weight_decay=opt.weight_decay, clip_norm=opt.clip_norm, beta1=opt.beta1,
                beta2=opt.beta2, eps=opt.eps)


@pytest.fixture(autouse=True)
def _default_setting():
    previous = fpmode.set_flush_denormals(True)
    yield
    fpmode.set_flush_denormals(previous)


# ------------------------------------------------------------------ what is flushed, what kept


@needs_switch
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_subnormal_inputs_are_read_as_zero_when_on_and_kept_when_off(dtype):
    model = MLP([1, 1], dtype=dtype, seed=0)
    model.set_flat_params([1.0, 0.0])                      # z = x
    x = np.array([[np.finfo(dtype).smallest_subnormal * 1000]], dtype=dtype)
    assert _subnormal(x) == 1
    with fpmode.flush_denormals(False):
        assert model.forward(x)[0, 0] == x[0, 0]      # IEEE: 1 * x + 0 is exactly x
        assert model.predict(x)[0, 0] == x[0, 0]
    assert model.forward(x)[0, 0] == 0                # DAZ: x is read as 0
    assert model.predict(x)[0, 0] == 0
    # the module setting and the context manager agree
    assert fastnn.get_flush_denormals() is True
    with fpmode.flush_denormals(False):
        assert fastnn.get_flush_denormals() is False
    assert fastnn.get_flush_denormals() is True


@needs_switch
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("make_opt", [lambda: SGD(lr=0.1, momentum=0.9),
                                      lambda: Adam(lr=0.01)], ids=["momentum", "adam"])
def test_training_flushes_subnormal_weights_and_state_when_on_and_keeps_them_when_off(
        dtype, make_opt):
    # x[:, 0] == 0, so W[0, 0] has a zero gradient: every update writes it back unchanged,
    # w + 0, which is w in IEEE arithmetic and 0 when w is subnormal and flushed
    rng = np.random.default_rng(0)
    X = np.column_stack([np.zeros(40), rng.standard_normal(40)])
    y = rng.standard_normal((40, 1))
    sub = np.finfo(dtype).smallest_subnormal * 1000
    results = {}
    for flush in (True, False):
        model = MLP([2, 1], dtype=dtype, seed=0)
        model.set_flat_params([sub, 0.5, 0.0])
        opt = make_opt()
        fit(model, X, y, "mse", opt, epochs=2, batch_size=8, seed=0, flush_denormals=flush)
        results[flush] = model.params.copy()
        # the optimizer state of a parameter with a zero gradient stays exactly 0 either way
        assert all(s[0] == 0 for s in opt.state if s.size)
    assert results[False][0] == np.asarray(sub, dtype)
    assert results[True][0] == 0
    # the other parameters never came near the subnormal range: bitwise the same
    np.testing.assert_array_equal(results[True][1:], results[False][1:])


@needs_switch
def test_loss_and_grad_and_step_follow_the_module_setting():
    rng = np.random.default_rng(1)
    X = np.column_stack([np.zeros(10), rng.standard_normal(10)]).astype(np.float32)
    y = rng.standard_normal((10, 1))
    sub = np.float32(np.finfo(np.float32).smallest_subnormal * 1000)
    model = MLP([2, 1], seed=0)
    opt = SGD(lr=0.1, momentum=0.5)
    for flush, want in ((False, sub), (True, 0)):
        model.set_flat_params([sub, 0.5, 0.0])
        with fpmode.flush_denormals(flush):
            model.loss_and_grad(X, y, "mse")
            assert model.grads[0] == 0                # x[:, 0] == 0
            opt.step(model)
        assert model.params[0] == want


# ------------------------------------------------------------------ the caller's mode


def _caller_modes():
    """Caller modes to start from: as found, and (x86) one with FTZ alone, nearest rounding."""
    found = _network._get_fpmode()
    modes = [found]
    if X86:
        modes.append((found & ~0x8040) | 0x8000)
    return modes


def _assert_mode_kept(run):
    for mode in _caller_modes():
        before = _network._get_fpmode()
        _network._set_fpmode(mode)
        try:
            try:
                run()
            finally:
                seen = _network._get_fpmode()
        finally:
            _network._set_fpmode(before)
        assert _control(seen) == _control(mode), (hex(seen), hex(mode))


@pytest.mark.parametrize("flush", [True, False, None], ids=["on", "off", "module"])
def test_fit_predict_and_the_other_entry_points_keep_the_callers_mode(flush):
    rng = np.random.default_rng(2)
    X, labels = rng.standard_normal((64, 3)), rng.integers(0, 3, 64)
    model = MLP([3, 8, 3], seed=0)

    def run():
        fit(model, X, labels, "cross_entropy", Adam(lr=0.01), epochs=2, batch_size=16, seed=0,
            validation_split=0.25, flush_denormals=flush)
        with fpmode.flush_denormals(True if flush is None else flush):
            model.predict(X)
            model.forward(X)
            model.loss_and_grad(X, labels, "cross_entropy")
            SGD(lr=0.1, momentum=0.9).step(model)
    _assert_mode_kept(run)


def test_the_callers_mode_is_kept_when_fit_diverges_or_a_callback_raises():
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((64, 3)) * 1e3, rng.standard_normal((64, 1)) * 1e3

    def diverge():
        with pytest.raises(TrainingDiverged):
            fit(MLP([3, 16, 1], seed=0), X, y, "mse", SGD(lr=1e6), epochs=5, seed=0)

    def callback_raises():
        def cb(epoch, logs):
            raise RuntimeError("stop")
        with pytest.raises(RuntimeError, match="stop"):
            fit(MLP([3, 4, 1], seed=0), X, y, "mse", epochs=3, callbacks=[cb], seed=0)

    def bad_input():
        with pytest.raises(ValueError):
            MLP([3, 4, 1], seed=0).predict(np.full((2, 3), np.nan))

    for run in (diverge, callback_raises, bad_input):
        _assert_mode_kept(run)


def test_ctrl_c_and_signal_handlers_see_the_callers_mode():
    # a Python signal handler runs in the middle of the compiled epoch loop: it must see the
    # caller's mode, not the flushing one, and so must the code after the interrupted fit
    rng = np.random.default_rng(4)
    X, labels = rng.standard_normal((20000, 32)), rng.integers(0, 10, 20000)
    model = MLP([32, 128, 10], seed=0)
    seen = []

    def handler(signum, frame):
        seen.append(_network._get_fpmode())
        raise KeyboardInterrupt

    def run():
        del seen[:]
        old = signal.signal(signal.SIGUSR1, handler)
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                fit(model, X, labels, "cross_entropy", epochs=10_000, batch_size=16, seed=0)
        finally:
            timer.cancel()
            signal.signal(signal.SIGUSR1, old)
        assert len(seen) == 1
        assert _control(seen[0]) == _control(_network._get_fpmode())

    _assert_mode_kept(run)


def test_the_setting_is_checked():
    with pytest.raises(TypeError, match="enabled must be True or False"):
        fastnn.set_flush_denormals(1)
    with pytest.raises(TypeError, match="flush_denormals must be True or False"):
        fit(MLP([2, 1]), np.zeros((4, 2)), np.zeros((4, 1)), "mse", flush_denormals="no")
    assert fastnn.get_flush_denormals() is True


# ------------------------------------------------------------------ against the reference


@pytest.mark.parametrize("flush", [True, False], ids=["on", "off"])
@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_float64_fit_equals_the_numpy_reference_with_and_without_flushing(flush, name):
    rng = np.random.default_rng(5)
    X, labels = rng.standard_normal((103, 5)), rng.integers(0, 4, 103)
    model = MLP([5, 8, 6, 4], activation=["tanh", "relu"], dtype=np.float64, seed=1)
    start = model.get_flat_params()
    opt = SGD(lr=0.05, momentum=0.9) if name == "momentum" else Adam(lr=0.01)
    fit(model, X, labels, "cross_entropy", opt, epochs=4, batch_size=16, seed=3,
        flush_denormals=flush)
    want = ref.train(start, [5, 8, 6, 4], ["tanh", "relu", "identity"], [0.01] * 3, X, 4,
                     _opt_dict(opt, "sgd" if name == "momentum" else "adam"), epochs=4,
                     batch_size=16, seed=3, labels=labels)
    np.testing.assert_allclose(model.params, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_flushing_changes_nothing_when_no_subnormal_arises(dtype):
    rng = np.random.default_rng(6)
    X, labels = rng.standard_normal((200, 4)), rng.integers(0, 3, 200)
    out = {}
    for flush in (True, False):
        model = MLP([4, 16, 3], dtype=dtype, seed=0)
        fit(model, X, labels, "cross_entropy", Adam(lr=0.01), epochs=3, batch_size=16, seed=0,
            flush_denormals=flush)
        out[flush] = model.params
    np.testing.assert_array_equal(out[True], out[False])


def _decaying_moment_data(n):
    """Column 0 is non-zero in the first row only: after it, the gradient of the weights from
    input 0 is exactly zero and Adam's first moment of them decays by beta1 = 0.9 a step,
    through the float32 subnormal range (below 1.2e-38) after ~800 steps."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((n, 2))
    X[1:, 0] = 0.0
    X[0, 0] = 1.0
    return X, rng.standard_normal((n, 1))


#: float32 against the float64 reference after 1800 Adam steps (2 epochs of 900 rows):
#: float32 rounding, accumulated; flushing adds at most ~1e-38 per value to it
F32_RTOL, F32_ATOL = 1e-4, 1e-6


@needs_switch
def test_float32_fit_with_flushing_stays_within_float32_tolerance_of_the_reference():
    X, y = _decaying_moment_data(900)
    model = MLP([2, 4, 1], activation="tanh", seed=0)
    start = model.get_flat_params()
    kept = MLP([2, 4, 1], activation="tanh", seed=0)
    opts = {True: Adam(lr=0.01), False: Adam(lr=0.01)}
    fit(model, X, y, "mse", opts[True], epochs=2, batch_size=1, shuffle=False,
        flush_denormals=True)
    fit(kept, X, y, "mse", opts[False], epochs=2, batch_size=1, shuffle=False,
        flush_denormals=False)
    # the case does what it is for: IEEE arithmetic leaves subnormal moments, flushing none
    assert _subnormal(opts[False].state[0]) > 0
    assert _subnormal(opts[True].state[0]) == 0
    want = ref.train(start, [2, 4, 1], ["tanh", "identity"], [0.01, 0.01], X, 0,
                     _opt_dict(opts[True], "adam"), epochs=2, batch_size=1, seed=None, Y=y,
                     shuffle=False)
    np.testing.assert_allclose(model.params, want, rtol=F32_RTOL, atol=F32_ATOL)
    np.testing.assert_allclose(kept.params, want, rtol=F32_RTOL, atol=F32_ATOL)


# ------------------------------------------------------------------ the C header itself

_GENERIC_PROBE = r"""
#include "fastnn_fpmode.h"
int main(void)
{
    unsigned long long saved = fnn_fpmode_enter(1);
    fnn_fpmode_leave(1, saved);
    /* no switch: nothing to report, nothing changed */
    return fnn_fpmode_supported() != 0 || saved != 0 || fnn_fpmode_get() != 0;
}
"""


def test_the_header_compiles_and_runs_as_a_no_op_on_cpus_without_a_switch(tmp_path):
    # the branch every CPU other than x86-64 and aarch64 takes, built on this one by hiding
    # the architecture macros from the preprocessor (GCC/Clang; no C library headers needed)
    import shutil
    import subprocess
    import sysconfig
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}) to build the probe with")
    header_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "src_c")
    if not os.path.exists(os.path.join(header_dir, "fastnn_fpmode.h")):
        pytest.skip("src_c/ is not next to the tests (testing an installed copy)")
    src, exe = tmp_path / "probe.c", tmp_path / "probe"
    src.write_text(_GENERIC_PROBE)
    undef = ["-U__x86_64__", "-U__SSE2__", "-U__SSE__", "-U__aarch64__"]
    obj = tmp_path / "probe.o"
    subprocess.run([cc, "-O2", "-ffreestanding", "-nostdinc", *undef, "-I", header_dir, "-c",
                    str(src), "-o", str(obj)], check=True, capture_output=True, timeout=60)
    subprocess.run([cc, str(obj), "-o", str(exe)], check=True, capture_output=True, timeout=60)
    assert subprocess.run([str(exe)], timeout=60).returncode == 0


@needs_switch
def test_the_private_setter_refuses_reserved_bits_instead_of_faulting():
    with pytest.raises(ValueError, match="reserved bits"):
        _network._set_fpmode(1 << 40)
    assert _network._get_fpmode() < (1 << 32)


# ------------------------------------------------------------------ the block is per thread


def test_overlapping_blocks_in_two_threads_leave_the_setting_as_it_was():
    # A enters (False), B enters (True), A leaves, B leaves: a process-wide flag saved and
    # restored by each block ended False for good; the block's setting is per thread
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with fpmode.flush_denormals(False):
            a_in.set()
            b_in.wait(10)
            seen["a"] = fastnn.get_flush_denormals()
        a_out.set()

    def b():
        a_in.wait(10)
        with fpmode.flush_denormals(True):
            b_in.set()
            a_out.wait(10)
            seen["b"] = fastnn.get_flush_denormals()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == {"a": False, "b": True}
    assert fastnn.get_flush_denormals() is True


def test_a_block_does_not_change_what_other_threads_use():
    inside, checked = threading.Event(), threading.Event()
    seen = []

    def other():
        inside.wait(10)
        seen.append((fastnn.get_flush_denormals(), fpmode.resolve(None)))
        checked.set()

    t = threading.Thread(target=other)
    t.start()
    with fpmode.flush_denormals(False):
        inside.set()
        checked.wait(10)
        assert fpmode.resolve(None) is False
    t.join(20)
    assert seen == [(True, True)]


def test_an_ensemble_fit_in_a_block_trains_its_members_with_the_block_setting(monkeypatch):
    import fastnn.ensemble as ensemble_module
    used = []
    real = ensemble_module.prepare_run   # each member's run, as fastnn.fit prepares it

    def spy(*args, **kwargs):
        run, epochs = real(*args, **kwargs)
        used.append(run.flush_denormals)
        return run, epochs

    monkeypatch.setattr(ensemble_module, "prepare_run", spy)
    X = np.random.default_rng(0).standard_normal((20, 2))
    ens = fastnn.MLPEnsemble([2, 4, 1], n_members=2, seed=0)
    with fpmode.flush_denormals(False):
        ens.fit(X, X[:, 0], "mse", epochs=1, n_threads=2)
    ens.fit(X, X[:, 0], "mse", epochs=1, n_threads=2)
    assert used == [False, False, True, True]
