"""MLPEnsemble: members equal to lone fits bitwise at any thread count, predictions equal to
the NumPy combination of the members', calibrated intervals on heteroscedastic data with a
gap, save/load, MPI, bad input."""
import copy
import os
import pickle
import shutil
import stat
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from scipy.stats import norm

import fastnn
from fastnn.ensemble import EnsemblePrediction, MLPEnsemble, load_ensemble
from fastnn.io.saving import ModelFileError
from tests._ensemble_data import _classification, _lone_member, _regression


CASES = {
    "adam-mse-float32": dict(loss="mse", opt=fastnn.Adam(lr=0.01), dtype=np.float32,
                             bootstrap=False, weights=False, kwargs={}),
    "sgd-weights-early-stop-float64": dict(
        loss="mse", opt=fastnn.SGD(lr=0.05, momentum=0.9, schedule=fastnn.StepDecay(2, 0.5)),
        dtype=np.float64, bootstrap=False, weights=True,
        kwargs=dict(validation_split=0.2, early_stopping=2)),
    "bootstrap-learned-gaussian": dict(loss=fastnn.GaussianNLL("learned"),
                                       opt=fastnn.Adam(lr=0.005), dtype=np.float32,
                                       bootstrap=True, weights=True, kwargs={}),
    "cross-entropy": dict(loss="cross_entropy", opt="adam", dtype=np.float32,
                          bootstrap=False, weights=False, kwargs=dict(batch_size=16)),
    "adamw-cosine-float64": dict(loss="cross_entropy",
                                 opt=fastnn.AdamW(lr=0.01, weight_decay=0.1,
                                                  schedule=fastnn.Cosine(6)),
                                 dtype=np.float64, bootstrap=False, weights=True,
                                 kwargs=dict(batch_size=16)),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("n_threads", [1, 2, 3, 4])
def test_each_member_equals_its_lone_fit_bitwise(case, n_threads):
    c = CASES[case]
    X, y = _classification() if c["loss"] == "cross_entropy" else _regression()
    n_out = 3 if c["loss"] == "cross_entropy" else (2 if c["bootstrap"] else 1)
    sw = np.random.default_rng(1).uniform(0.5, 2.0, X.shape[0]) if c["weights"] else None
    kwargs = dict(dict(epochs=6, batch_size=32), **c["kwargs"])
    ens = MLPEnsemble([3, 16, 8, n_out], 3, activation="tanh", dtype=c["dtype"], seed=5,
                      bootstrap=c["bootstrap"])
    histories = ens.fit(X, y, c["loss"], c["opt"], n_threads=n_threads, sample_weight=sw,
                        **kwargs)
    assert len(histories) == 3 and ens.histories_ == histories
    assert len(set(ens.member_seeds)) == 3
    for k in range(3):
        alone = _lone_member(ens, k, X, y, c["loss"], c["opt"], sw, **kwargs)
        np.testing.assert_array_equal(ens.members[k].params, alone.params)
        assert ens.members[k].history_.loss == alone.history_.loss
    # members differ from each other (different seeds)
    assert not np.array_equal(ens.members[0].params, ens.members[1].params)


def test_same_seed_same_ensemble_and_second_fit_continues():
    X, y = _regression()
    a = MLPEnsemble([3, 8, 1], 2, seed=3)
    b = MLPEnsemble([3, 8, 1], 2, seed=3)
    opt = fastnn.Adam(lr=0.01)
    for ens, threads in ((a, 1), (b, 2)):
        ens.fit(X, y, "mse", opt, epochs=2, n_threads=threads)
        ens.fit(X, y, "mse", opt, epochs=2, n_threads=threads)   # continues each optimizer
    for ma, mb in zip(a.members, b.members):
        np.testing.assert_array_equal(ma.params, mb.params)
    assert all(o.t > 0 for o in a.optimizers_) and a.optimizers_[0] is not a.optimizers_[1]
    # the lone equivalent of two fits with the same optimizer
    alone = fastnn.MLP([3, 8, 1], seed=a.member_seeds[1])
    lone_opt = copy.deepcopy(opt)
    for _ in range(2):
        fastnn.fit(alone, X, y, "mse", lone_opt, epochs=2, seed=a.member_seeds[1], n_threads=1)
    np.testing.assert_array_equal(a.members[1].params, alone.params)


def test_classification_prediction_is_the_mean_of_member_probabilities():
    X, y = _classification()
    ens = MLPEnsemble([3, 8, 3], 4, seed=0, dtype=np.float64)
    ens.fit(X, y, "cross_entropy", "adam", epochs=3)
    P = np.stack([m.predict(X) for m in ens.members])
    np.testing.assert_allclose(ens.predict_proba(X), P.mean(axis=0), rtol=1e-14)
    np.testing.assert_array_equal(ens.predict_members(X), P)
    with pytest.raises(ValueError, match="predict_distribution is for regression"):
        ens.predict_distribution(X)
    with pytest.raises(ValueError, match="predict_interval needs members trained with"):
        ens.predict_interval(X)


def test_regression_mixture_mean_variance_and_intervals_from_numpy():
    X, y = _regression()
    ens = MLPEnsemble([3, 8, 2], 4, seed=0, dtype=np.float64)
    ens.fit(X, y, fastnn.GaussianNLL("learned"), "adam", epochs=3)
    mu = np.stack([m.predict(X) for m in ens.members])
    sd = np.stack([m.predict_std(X) for m in ens.members])
    mean = mu.mean(axis=0)
    # the mixture's variance from its definition E[y^2] - E[y]^2
    second = (sd ** 2 + mu ** 2).mean(axis=0)
    d = ens.predict_distribution(X)
    assert isinstance(d, EnsemblePrediction)
    np.testing.assert_allclose(d.mean, mean, rtol=1e-13)
    np.testing.assert_allclose(ens.predict(X), mean, rtol=1e-13)
    np.testing.assert_allclose(d.aleatoric, (sd ** 2).mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(d.epistemic, mu.var(axis=0), rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(d.variance, second - mean ** 2, rtol=1e-9)
    np.testing.assert_allclose(ens.predict_std(X), np.sqrt(second - mean ** 2), rtol=1e-9)
    lo, hi = ens.predict_interval(X, level=0.8)
    np.testing.assert_allclose(lo, norm.ppf(0.1, mean, np.sqrt(d.variance)), rtol=1e-12)
    np.testing.assert_allclose(hi, norm.ppf(0.9, mean, np.sqrt(d.variance)), rtol=1e-12)


def test_mse_ensemble_std_is_the_spread_of_members():
    X, y = _regression()
    ens = MLPEnsemble([3, 8, 1], 3, seed=0, dtype=np.float64)
    ens.fit(X, y, "mse", epochs=2)
    mu = np.stack([m.predict(X) for m in ens.members])
    np.testing.assert_allclose(ens.predict_std(X), mu.std(axis=0), rtol=1e-10)
    np.testing.assert_array_equal(ens.predict_distribution(X).aleatoric, 0.0)


def test_fixed_sigma_and_poisson_aleatoric_parts():
    X, y = _regression()
    ens = MLPEnsemble([3, 8, 1], 3, seed=0, dtype=np.float64)
    ens.fit(X, y, fastnn.GaussianNLL(0.3), epochs=2)
    d = ens.predict_distribution(X)
    np.testing.assert_allclose(d.aleatoric, 0.09, rtol=1e-15)
    counts = np.random.default_rng(0).poisson(2.0, (X.shape[0], 1))
    ens.fit(X, counts, "poisson", epochs=2)
    rates = np.stack([m.predict(X) for m in ens.members])
    d = ens.predict_distribution(X)
    # a mixture of Poissons: E[y] = mean rate, Var[y] = E[rate] + Var[rate]
    np.testing.assert_allclose(d.aleatoric, rates.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(d.variance, rates.mean(axis=0) + rates.var(axis=0), rtol=1e-10)


def test_input_gradient_and_jacobian_are_member_mean_and_spread():
    X, y = _regression(50)
    ens = MLPEnsemble([3, 8, 2], 3, activation="tanh", seed=0, dtype=np.float64)
    ens.fit(X, y, fastnn.GaussianNLL("learned"), epochs=2)
    J = np.stack([m.jacobian(X) for m in ens.members])
    mean, std = ens.jacobian(X, return_std=True)
    np.testing.assert_allclose(mean, J.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(std, J.std(axis=0), rtol=1e-10, atol=1e-15)
    G = np.stack([m.input_gradient(X, y) for m in ens.members])
    np.testing.assert_allclose(ens.input_gradient(X, y), G.mean(axis=0), rtol=1e-13)
    # the mean of the output gradients is the gradient of the ensemble's mean prediction
    h = 1e-6
    E = np.zeros_like(X)
    E[:, 1] = h
    fd = (ens.predict(X + E) - ens.predict(X - E))[:, 0] / (2 * h)
    np.testing.assert_allclose(ens.input_gradient(X, output=0)[:, 1], fd, rtol=1e-6,
                               atol=1e-8)


def _heteroscedastic(n, rng, gap=(-2.0, 0.0)):
    """y = sin(x) + noise with sigma(x) = 0.1 + 0.3 |x|, x ~ U(-4, 4) minus the gap."""
    x = rng.uniform(-4, 4, n)
    x = x[(x < gap[0]) | (x > gap[1])]
    sigma = 0.1 + 0.3 * np.abs(x)
    return x[:, None], (np.sin(x) + sigma * rng.standard_normal(x.shape))[:, None]


def test_intervals_cover_where_there_is_data_and_epistemic_grows_in_the_gap():
    X, y = _heteroscedastic(3000, np.random.default_rng(0))
    ens = MLPEnsemble([1, 64, 64, 2], 5, activation="relu", seed=0)
    ens.fit(X, y, fastnn.GaussianNLL("learned"), fastnn.Adam(lr=0.003), epochs=40,
            batch_size=64)
    X_test, y_test = _heteroscedastic(20000, np.random.default_rng(1))
    for level in (0.9, 0.95):
        lo, hi = ens.predict_interval(X_test, level)
        coverage = np.mean((y_test >= lo) & (y_test <= hi))
        assert abs(coverage - level) <= 0.03, (level, coverage)
    grid = np.linspace(-4, 4, 161)
    epistemic = ens.predict_distribution(grid[:, None]).epistemic[:, 0]
    inside = (grid > -1.75) & (grid < -0.25)
    near = ((grid > -3.0) & (grid < -2.1)) | ((grid > 0.1) & (grid < 1.0))
    # the members disagree far more inside the gap than on the data on either side of it
    assert epistemic[inside].mean() > 5 * np.median(epistemic[near])
    assert epistemic[inside].mean() > np.median(epistemic[~inside])


def test_save_load_round_trip(tmp_path):
    X, y = _regression()
    ens = MLPEnsemble([3, 8, 2], 3, seed=4, dtype=np.float64, bootstrap=True)
    ens.fit(X, y, fastnn.GaussianNLL("learned"), fastnn.Adam(lr=0.01), epochs=2)
    path = tmp_path / "ens.npz"
    ens.save(path)
    back = load_ensemble(path)
    assert back.member_seeds == ens.member_seeds and back.bootstrap
    for a, b in zip(ens.members, back.members):
        np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(back.predict_std(X), ens.predict_std(X))
    assert all(o.t == p.t for o, p in zip(back.optimizers_, ens.optimizers_))
    pickled = pickle.loads(pickle.dumps(ens))
    np.testing.assert_array_equal(pickled.predict_std(X), ens.predict_std(X))
    # training continues identically after loading
    ens.fit(X, y, fastnn.GaussianNLL("learned"), epochs=1)
    back.fit(X, y, fastnn.GaussianNLL("learned"), epochs=1)
    for a, b in zip(ens.members, back.members):
        np.testing.assert_array_equal(a.params, b.params)


def _rewrite(src, dst, change):
    """Copy the archive src to dst with change(name, bytes) -> bytes or None (dropped)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)


def test_crafted_files_raise_model_file_error(tmp_path):
    X, y = _regression(50)
    ens = MLPEnsemble([3, 4, 1], 2, seed=0)
    ens.fit(X, y, "mse", epochs=1)
    good = tmp_path / "good.npz"
    ens.save(good)
    raw = good.read_bytes()
    cases = {
        "not-zip": (b"hello world", "not a zip archive"),
        "truncated": (raw[: len(raw) // 2], "truncated or corrupted"),
    }
    for name, (data, message) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(ModelFileError, match=message):
            load_ensemble(p)

    def npy(array):
        import io
        buf = io.BytesIO()
        np.save(buf, array)
        return buf.getvalue()

    edits = {
        "no-member": (lambda n, d: None if n == "member_1.npy" else d, "no 'member_1'"),
        "bad-member": (lambda n, d: npy(np.frombuffer(b"PK\x03\x04junk", np.uint8))
                       if n == "member_0.npy" else d, "member 0: "),
        "member-dtype": (lambda n, d: npy(np.zeros(3)) if n == "member_0.npy" else d,
                         "expected 1-D uint8"),
        "newer": (lambda n, d: npy(np.array('{"format": "fastnn-ensemble", '
                                            '"format_version": 9}'))
                  if n == "description.npy" else d, "format version 9"),
        "not-json": (lambda n, d: npy(np.array("{nope")) if n == "description.npy" else d,
                     "not valid JSON"),
        "object": (lambda n, d: npy(np.array([{"a": 1}], dtype=object))
                   if n == "description.npy" else d, "holds Python objects"),
        # a header cannot make the reader allocate what it declares, nor a compressed entry
        # make it hold more than one chunk in memory
        "huge-declared-member": (lambda n, d: _npy_header("|u1", (4_000_000_000,))
                                 if n == "member_0.npy" else d, "declares 4000000000 bytes"),
        "huge-description": (lambda n, d: _npy_header("<U500000000", ())
                             if n == "description.npy" else d, "larger than"),
        "zeros-member": (lambda n, d: npy(np.zeros(3 << 20, np.uint8))
                         if n == "member_0.npy" else d, "member 0: it is not a model file"),
        "seeds": (lambda n, d: npy(np.array(
            '{"format": "fastnn-ensemble", "format_version": 1, "n_members": 2, '
            '"member_seeds": [1], "bootstrap": false}')) if n == "description.npy" else d,
            "member_seeds is"),
        # a key or an entry no version writes: a layout this reader does not know, refused
        # as fastnn.load refuses an unknown key (not half-read)
        "unknown-key": (lambda n, d: npy(np.array(
            '{"format": "fastnn-ensemble", "format_version": 1, "n_members": 2, '
            '"member_seeds": [0, 1], "bootstrap": false, "weights": [0.9, 0.1]}'))
            if n == "description.npy" else d, r"keys \['weights'\].*does not know"),
    }
    for name, (change, message) in edits.items():
        p = tmp_path / f"{name}.npz"
        _rewrite(good, p, change)
        with pytest.raises(ModelFileError, match=message):
            load_ensemble(p)
    extra = tmp_path / "extra-member.npz"
    _rewrite(good, extra, lambda n, d: d)
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(extra, "a") as zout:
        zout.writestr("member_2.npy", zin.read("member_1.npy"))
    with pytest.raises(ModelFileError, match=r"entries \['member_2'\], which no ensemble of 2"):
        load_ensemble(extra)
    # a single model's file is not an ensemble, and the mixed architecture is caught
    single = tmp_path / "single.npz"
    ens.members[0].save(single)
    with pytest.raises(ModelFileError, match="use fastnn.load"):
        load_ensemble(single)
    other = tmp_path / "other.npz"
    fastnn.MLP([3, 5, 1], seed=0).save(other)
    mixed = tmp_path / "mixed.npz"
    _rewrite(good, mixed, lambda n, d: npy(np.frombuffer(other.read_bytes(), np.uint8))
             if n == "member_1.npy" else d)
    with pytest.raises(ModelFileError, match="do not form an ensemble"):
        load_ensemble(mixed)


def test_callbacks_see_the_member_and_can_stop_it():
    X, y = _regression(64)
    seen = []

    def cb(epoch, logs):
        seen.append((logs["member"], epoch))
        return logs["member"] == 1 and epoch == 2      # stop member 1 after two epochs

    ens = MLPEnsemble([3, 4, 1], 3, seed=0)
    ens.fit(X, y, "mse", epochs=4, callbacks=[cb], n_threads=2)
    # epochs are numbered from 1, as fastnn.fit numbers them
    assert sorted(seen) == sorted([(k, e) for k in (0, 2) for e in range(1, 5)]
                                  + [(1, 1), (1, 2)])
    assert len(ens.histories_[1].loss) == 2 and len(ens.histories_[0].loss) == 4


def test_a_failing_member_raises_after_the_others_finish():
    X, y = _regression(64)

    def cb(epoch, logs):
        if logs["member"] == 2:
            raise RuntimeError("boom")

    ens = MLPEnsemble([3, 4, 1], 3, seed=0)
    with pytest.raises(RuntimeError, match="boom") as info:
        ens.fit(X, y, "mse", epochs=2, callbacks=[cb], n_threads=2)
    if hasattr(info.value, "__notes__"):
        assert "member 2" in info.value.__notes__[0]
    # member 2 stopped after its first epoch (recorded before its callbacks ran), the
    # others trained on
    assert len(ens.histories_[0].loss) == 2 and len(ens.histories_[2].loss) == 1
    assert [opt.completed_epochs for opt in ens.optimizers_] == [2, 2, 1]


def test_an_interrupt_in_one_member_stops_every_member():
    X, y = _regression(64)

    def cb(epoch, logs):
        if logs["member"] == 0:
            raise KeyboardInterrupt

    ens = MLPEnsemble([3, 4, 1], 3, seed=0)
    with pytest.raises(KeyboardInterrupt):
        ens.fit(X, y, "mse", epochs=50, callbacks=[cb], n_threads=1)
    # lockstep epochs: members 1 and 2 ran epoch 1 beside member 0; each records it, then
    # all stop
    assert [len(h.loss) for h in ens.histories_] == [1, 1, 1]
    assert [opt.completed_epochs for opt in ens.optimizers_] == [1, 1, 1]


def test_bad_input():
    X, y = _regression(20)
    with pytest.raises(ValueError, match="n_members=0"):
        MLPEnsemble([3, 4, 1], 0)
    with pytest.raises(TypeError, match="n_members must be an integer"):
        MLPEnsemble([3, 4, 1], 2.5)
    with pytest.raises(ValueError, match="seed=-1"):
        MLPEnsemble([3, 4, 1], 2, seed=-1)
    with pytest.raises(TypeError, match="bootstrap must be True or False"):
        MLPEnsemble([3, 4, 1], 2, bootstrap="yes")
    ens = MLPEnsemble([3, 4, 1], 2, seed=0)
    with pytest.raises(ValueError, match="seed=-1"):
        ens.fit(X, y, "mse", seed=-1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        ens.fit(X, y, "mse", seed="1")
    with pytest.raises(ValueError, match="n_threads=0"):
        ens.fit(X, y, "mse", n_threads=0)
    with pytest.raises(ValueError, match="X has 2 features"):
        ens.fit(X[:, :2], y, "mse")
    with pytest.raises(ValueError, match="X has 20 samples but y has 19"):
        ens.fit(X, y[:19], "mse")
    with pytest.raises(TypeError, match="callbacks must be a sequence"):
        ens.fit(X, y, "mse", callbacks=print)
    boot = MLPEnsemble([3, 4, 1], 2, seed=0, bootstrap=True)
    with pytest.raises(ValueError, match="validation_split with bootstrap"):
        boot.fit(X, y, "mse", validation_split=0.2)
    with pytest.raises(ValueError, match="level=1.0"):
        ens.predict_interval(X, 1.0)
    with pytest.raises(ValueError, match="X contains NaN"):
        ens.predict(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="predict_proba needs a sigmoid or softmax"):
        ens.predict_proba(X)
    with pytest.raises(TypeError, match="models must be a non-empty sequence"):
        MLPEnsemble.from_models([])
    m = fastnn.MLP([3, 4, 1], seed=0)
    with pytest.raises(ValueError, match="the same MLP object twice"):
        MLPEnsemble.from_models([m, m])
    with pytest.raises(ValueError, match="expected the architecture"):
        MLPEnsemble.from_models([m, fastnn.MLP([3, 5, 1], seed=0)])
    with pytest.raises(ValueError, match="member_seeds has 1 entries"):
        MLPEnsemble.from_models([m, m.copy()], member_seeds=[1])


def test_one_owner_of_the_core_count():
    # fastnn.runtime.threads owns the count of available cores; the ensemble modules keep no twin
    import fastnn.ensemble
    import fastnn.runtime.threads
    for module in ("fastnn.ensemble", "fastnn.interop.sklearn_ensemble"):
        mod = __import__(module, fromlist=["_"])
        assert getattr(mod, "available_cores", fastnn.runtime.threads.available_cores) is \
            fastnn.runtime.threads.available_cores, module
    assert fastnn.runtime.threads.available_cores() >= 1


MPI = None
try:
    from mpi4py import MPI
except ImportError:  # pragma: no cover - the mpi extra is part of the test extra
    pass


@pytest.mark.skipif(MPI is None, reason="needs the mpi extra (mpi4py)")
@pytest.mark.parametrize("variant", ["plain", "bootstrap", "auto-split", "split"])
def test_mpi_two_ranks_train_each_member_like_one_process(tmp_path, variant):
    # every row the fit draws (bootstrap resamples with weights, each member's held-out
    # rows) is drawn over the global rows, as one process draws it: each rank used to draw
    # from its own shard and stream
    here = os.path.dirname(sys.executable)
    mpiexec = shutil.which("mpiexec", path=here + os.pathsep + os.environ.get("PATH", ""))
    if mpiexec is None:
        pytest.fail("mpi4py is installed but mpiexec is not on PATH")
    out = tmp_path / "ens.npz"
    worker = os.path.join(os.path.dirname(__file__), "mpi_ensemble_worker.py")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
    result = subprocess.run([mpiexec, "-n", "2", sys.executable, worker, str(out), variant],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, os.path.dirname(__file__))
    try:
        import mpi_ensemble_worker as w
    finally:
        sys.path.pop(0)
    ens = w.fit(variant)
    if variant == "plain":
        bad = subprocess.run([mpiexec, "-n", "2", sys.executable, worker, "bad"],
                             capture_output=True, text=True, timeout=120, env=env)
        assert bad.returncode != 0
        # the same error on every rank, naming the rank that failed and why
        for rank in (0, 1):
            assert f"rank {rank} raised: invalid input on 1 of 2 ranks (rank 1: ValueError: " \
                "X contains NaN" in bad.stdout, bad.stdout + bad.stderr
    with np.load(out) as data:
        for k, member in enumerate(ens.members):
            np.testing.assert_allclose(data[f"rank0_{k}"], member.params, rtol=1e-10,
                                       atol=1e-12)
            np.testing.assert_array_equal(data[f"rank0_{k}"], data[f"rank1_{k}"])


def test_members_trained_with_different_fixed_sigmas_each_bring_their_own_noise():
    # from_models accepts members fitted apart; the aleatoric part is the mean of each
    # member's sigma_k^2 (it used to be member 0's sigma^2 for all)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2))
    y = X[:, 0] + 0.3 * rng.standard_normal(40)
    models = []
    for k, loss in enumerate([fastnn.GaussianNLL(0.5), fastnn.GaussianNLL(2.0), "mse"]):
        m = fastnn.MLP([2, 4, 1], dtype=np.float64, seed=k)
        m.fit(X, y, loss, epochs=1, seed=k)
        models.append(m)
    ens = MLPEnsemble.from_models(models)
    d = ens.predict_distribution(X)
    means = np.stack([m.predict(X) for m in models])
    np.testing.assert_allclose(d.aleatoric, (0.25 + 4.0 + 0.0) / 3, rtol=1e-15)
    np.testing.assert_allclose(d.epistemic, means.var(axis=0), rtol=1e-12)


def test_one_early_stopping_instance_gives_every_member_its_own_record():
    # members training at once shared the instance's record: wrong stops and best weights
    # (possibly another member's).  Lockstep epochs interleave the members' records.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = X[:, 0] - X[:, 1] ** 2 + 0.3 * rng.standard_normal(200)
    Xv, yv = rng.standard_normal((50, 3)), rng.standard_normal(50)
    ens = MLPEnsemble([3, 16, 1], n_members=2, seed=0, activation="tanh")
    es = fastnn.EarlyStopping(patience=2)
    ens.fit(X, y, "mse", fastnn.Adam(lr=0.05), epochs=12, n_threads=2, batch_size=16,
            validation_data=(Xv, yv), early_stopping=es)
    for k, s in enumerate(ens.member_seeds):
        alone = fastnn.MLP([3, 16, 1], activation="tanh", seed=s)
        h = alone.fit(X, y, "mse", fastnn.Adam(lr=0.05), epochs=12, seed=s, n_threads=1,
                      batch_size=16, validation_data=(Xv, yv),
                      early_stopping=fastnn.EarlyStopping(patience=2))
        assert ens.histories_[k].epoch == h.epoch
        assert ens.histories_[k].best_epoch == h.best_epoch
        assert ens.members[k].params.tobytes() == alone.params.tobytes()
    # each member's record continues through its optimizer in a later fit
    assert ens.optimizers_[0]._early_stopping is not ens.optimizers_[1]._early_stopping


def test_members_take_dropout_and_layer_normalization():
    # MLPEnsemble had no dropout/normalization arguments: those layers could not be
    # used in an ensemble, and from_models accepted members of different normalization
    ens = fastnn.MLPEnsemble([3, 8, 2], n_members=2, dropout=0.2, normalization="layer", seed=0)
    assert all(m.layers[0].dropout == 0.2 and m.layers[0].normalization == "layer"
               for m in ens.members)
    X = np.random.default_rng(0).normal(size=(40, 3))
    ens.fit(X, X[:, :2], "mse", epochs=2)
    assert np.isfinite(ens.predict(X)).all()
    with pytest.raises(ValueError, match=r"models\[1\] is"):
        fastnn.MLPEnsemble.from_models([fastnn.MLP([3, 8, 2], normalization="layer"),
                                        fastnn.MLP([3, 8, 2])])


@pytest.mark.skipif(MPI is None, reason="needs the mpi extra (mpi4py)")
@pytest.mark.parametrize("mode, differs", [("members", "n_members: rank 0 3, rank 1 2"),
                                           ("bootstrap", "bootstrap: rank 0 False, rank 1 True")])
def test_mpi_ranks_whose_ensembles_differ_raise_the_same_error_never_hang(mode, differs):
    # before: a rank with one member more waited forever in that member's collectives, and
    # bootstrap on one rank only trained silently on a mix of resampled and plain shards
    here = os.path.dirname(sys.executable)
    mpiexec = shutil.which("mpiexec", path=here + os.pathsep + os.environ.get("PATH", ""))
    if mpiexec is None:
        pytest.fail("mpi4py is installed but mpiexec is not on PATH")
    worker = os.path.join(os.path.dirname(__file__), "mpi_ensemble_worker.py")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
    result = subprocess.run([mpiexec, "-n", "2", sys.executable, worker, mode],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode != 0
    for rank in (0, 1):
        assert f"rank {rank} raised: the ensemble's configuration differs between ranks " \
            f"({differs})" in result.stdout, result.stdout + result.stderr


@pytest.mark.skipif(MPI is None, reason="needs the mpi extra (mpi4py)")
@pytest.mark.parametrize("argument, message", [
    ("n_threads", "n_threads=0"), ("callbacks", "callbacks must be callables"),
    ("loss", "loss"), ("optimizer", "optimizer=LBFGS"), ("keyword", "bootstrap")])
def test_mpi_an_argument_refused_on_one_rank_is_refused_on_every_rank(argument, message):
    # MLPEnsemble.fit's own checks ran before the ranks agreed: a rank refusing an argument
    # alone left the other waiting forever in a collective
    here = os.path.dirname(sys.executable)
    mpiexec = shutil.which("mpiexec", path=here + os.pathsep + os.environ.get("PATH", ""))
    worker = os.path.join(os.path.dirname(__file__), "mpi_ensemble_worker.py")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
    result = subprocess.run([mpiexec, "-n", "2", sys.executable, worker, "bad-arg", argument],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode != 0
    for rank in (0, 1):
        assert f"rank {rank} raised: invalid input on 1 of 2 ranks (rank 1: " in \
            result.stdout, result.stdout + result.stderr
    assert message in result.stdout


def _npy_header(descr, shape):
    """A .npy header alone (no data), declaring `descr` and `shape` (NumPy's own writer)."""
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


def test_crafted_ensemble_files_fail_fast_with_bounded_memory(tmp_path):
    # load_ensemble reads the archive as fastnn.load does: each entry's sizes checked against
    # the file and each .npy header before its data (before: np.load allocated whatever a
    # header declared, a MemoryError for 50 GB, and held every member's bytes at once)
    ens = MLPEnsemble([3, 4, 1], 2, seed=0)
    good = tmp_path / "good.npz"
    ens.save(good)
    cases = {
        "huge-member": (lambda n, d: _npy_header("|u1", (50_000_000_000,)) + b"\0" * 64
                        if n == "member_0.npy" else d, "'member_0' entry declares 50000000000"),
        "huge-description": (lambda n, d: _npy_header("<U500000000", ()) + b"\0" * 64
                             if n == "description.npy" else d, "larger than"),
        "member-2d": (lambda n, d: _npy_header("|u1", (2, 2)) + b"\0" * 4
                      if n == "member_0.npy" else d, "expected 1-D uint8"),
        "short-member": (lambda n, d: _npy_header("|u1", (100,)) + b"PK\x03\x04" + b"\0" * 20
                         if n == "member_0.npy" else d, "does not hold the 100 bytes"),
        # a member that is not a zip archive is rejected from its first bytes, before the
        # rest (here 20 MB that deflate to 20 KB) is read or written anywhere
        "not-a-member": (lambda n, d: _npy_header("|u1", (20_000_000,)) + bytes(20_000_000)
                         if n == "member_0.npy" else d, "member 0: it is not a model file"),
        "nested-json": (lambda n, d: _npy_header("<U200000", ()) +
                        ("[" * 100_000 + "]" * 100_000).encode("utf-32-le")
                        if n == "description.npy" else d, "RecursionError|not valid JSON"),
    }
    for name, (change, message) in cases.items():
        p = tmp_path / f"{name}.npz"
        with zipfile.ZipFile(good) as zin, zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zout:
            for info in zin.infolist():
                zout.writestr(info.filename, change(info.filename, zin.read(info.filename)))
        with pytest.raises(ModelFileError, match=message):
            load_ensemble(p)


def test_ensemble_save_keeps_permissions_follows_links_and_cleans_up(tmp_path, monkeypatch):
    # MLPEnsemble.save writes as MLP.save does (before: a replaced file became 0600 and a
    # symbolic link was replaced by a regular file)
    ens = MLPEnsemble([3, 4, 1], 2, seed=0)
    target = tmp_path / "ens.npz"
    ens.save(target)
    os.chmod(target, 0o640)
    ens.save(target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    link = tmp_path / "link.npz"
    os.symlink(target, link)
    ens.save(link)
    assert os.path.islink(link)
    load_ensemble(link)
    # an interrupt while writing leaves the previous file and no temporary file behind
    before = target.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "savez_compressed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ens.save(target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ens.npz", "link.npz"]


def test_rebound_public_state_is_checked_before_use(tmp_path):
    # members, member_seeds, bootstrap and optimizers_ are plain attributes; before, a member
    # of another dtype or architecture was trained and saved into a file load_ensemble then
    # rejected (the save replaced a good file), a member listed twice was trained from two
    # threads at once, and seed or optimizer lists of another length ended in IndexError
    X, y = _regression(40)
    path = tmp_path / "ens.npz"

    def fresh():
        return MLPEnsemble([3, 4, 1], 3, seed=0)

    good = fresh()
    good.save(path)
    saved = path.read_bytes()
    edits = [
        (lambda e: e.members.__setitem__(1, fastnn.MLP([3, 4, 1], dtype=np.float64)),
         ValueError, r"members\[1\] is MLP\(\[3, 4, 1\].*dtype=float64"),
        (lambda e: e.members.__setitem__(2, fastnn.MLP([3, 7, 1])), ValueError,
         r"members\[2\] is MLP\(\[3, 7, 1\]"),
        (lambda e: e.members.append(e.members[0]), ValueError, "the same MLP object twice"),
        (lambda e: setattr(e, "members", []), TypeError, "non-empty sequence"),
        (lambda e: setattr(e, "member_seeds", [1]), ValueError,
         "member_seeds has 1 entries; expected 3"),
        (lambda e: setattr(e, "member_seeds", [0, -1, 2]), ValueError, r"member_seeds\[1\]"),
        (lambda e: setattr(e, "bootstrap", "yes"), TypeError, "bootstrap must be True or False"),
        (lambda e: setattr(e, "optimizers_", [None]), ValueError,
         "optimizers_ is .*expected a list of 3"),
        (lambda e: e.optimizers_.__setitem__(0, "adam"), TypeError, r"optimizers_\[0\] is a str"),
    ]
    for edit, error, message in edits:
        for use in (lambda e: e.fit(X, y, "mse", epochs=1), lambda e: e.save(path),
                    lambda e: e.predict(X), lambda e: e.jacobian(X),
                    lambda e: e.input_gradient(X, output=0)):
            ens = fresh()
            originals = [(m, m.get_flat_params()) for m in ens.members]
            edit(ens)
            with pytest.raises(error, match=message):
                use(ens)
            for m, p in originals:
                np.testing.assert_array_equal(m.params, p)  # nothing trained
    assert path.read_bytes() == saved  # the good file was never replaced


def test_a_save_during_fit_pairs_each_member_with_the_optimizer_it_trains_with(tmp_path):
    # a callback (or a monitoring thread) saving the ensemble mid-fit: each member's file
    # holds its weights and the state of the optimizer that produced them (before: the
    # previous fit's optimizers, here none, so a resumed run restarted Adam's moments)
    X, y = _regression(40)
    ens = MLPEnsemble([3, 4, 1], 2, seed=0, dtype=np.float64)
    path = tmp_path / "mid.npz"
    snap = {}

    def save_mid_fit(epoch, logs):
        if logs["member"] == 1 and epoch == 2:
            ens.save(path)
            snap["params"] = [m.get_flat_params() for m in ens.members]
    ens.fit(X, y, "mse", fastnn.Adam(lr=0.01), epochs=3, n_threads=1,
            callbacks=[save_mid_fit])
    back = load_ensemble(path)
    for k, (m, opt) in enumerate(zip(back.members, back.optimizers_)):
        np.testing.assert_array_equal(m.params, snap["params"][k])
        assert opt is not None and opt.t > 0 and opt.state[0] is not None, k
