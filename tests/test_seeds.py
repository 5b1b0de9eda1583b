"""One seed fixes a run: a fit without a seed uses the model's (MLP.seed), an ensemble's fit
its members', and a run continued with the same optimizer equals one long run."""
import copy
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import MLPEnsemble

FASTNN_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    return X, (X[:, 0] - X[:, 1] > 0).astype(int) + (X[:, 2] > 1)


def _model(seed=0, **kwargs):
    return fastnn.MLP([4, 16, 3], activation="relu", dtype=np.float64, seed=seed,
                      dropout=0.2, **kwargs)


# every stream a fit draws: shuffling, the validation split and the dropout masks
FIT = dict(batch_size=16, validation_split=0.25)


def _fit(model, epochs, optimizer, **kwargs):
    return model.fit(*_data(), "cross_entropy", optimizer, epochs=epochs, **FIT, **kwargs)


def test_the_model_keeps_its_int_seed():
    assert fastnn.MLP([2, 2], seed=7).seed == 7
    assert fastnn.MLP([2, 2], seed=np.int64(7)).seed == 7
    assert fastnn.MLP([2, 2]).seed is None
    assert fastnn.MLP([2, 2], seed=np.random.default_rng(7)).seed is None
    model = fastnn.MLP([2, 2], seed=7).init_params(9)
    assert model.seed == 9 and model.init_params().seed is None
    model.init_params(3)
    assert model.copy().seed == 3 and model.astype(np.float64).seed == 3
    assert pickle.loads(pickle.dumps(model)).seed == 3


def test_without_a_fit_seed_the_models_seed_fixes_the_run():
    a, b, c = _model(), _model(), _model()
    _fit(a, 3, fastnn.Adam(lr=0.01))
    _fit(b, 3, fastnn.Adam(lr=0.01))
    _fit(c, 3, fastnn.Adam(lr=0.01), seed=0)     # what the rule says: the model's seed
    assert a.params.tobytes() == b.params.tobytes() == c.params.tobytes()
    assert a.history_.val_loss == c.history_.val_loss    # the same validation split
    other = _model(seed=1)
    other.params[...] = _model().params          # same start, another seed: other streams
    _fit(other, 3, fastnn.Adam(lr=0.01))
    assert other.params.tobytes() != a.params.tobytes()


@pytest.mark.parametrize("fit_seed", [None, 5], ids=["model-seed", "fit-seed"])
def test_a_continued_run_equals_one_long_run(fit_seed):
    kwargs = {} if fit_seed is None else {"seed": fit_seed}
    opt = fastnn.AdamW(lr=0.01, schedule=fastnn.StepDecay(2, 0.5))
    parts = _model()
    _fit(parts, 3, opt, **kwargs)
    _fit(parts, 2, opt, **kwargs)
    whole = _model()
    _fit(whole, 5, fastnn.AdamW(lr=0.01, schedule=fastnn.StepDecay(2, 0.5)), **kwargs)
    assert parts.params.tobytes() == whole.params.tobytes()


def test_a_model_without_a_seed_still_draws_fresh_entropy():
    a = fastnn.MLP([4, 16, 3], dtype=np.float64)
    b = a.copy()
    assert a.seed is None and b.seed is None
    _fit(a, 2, fastnn.SGD(lr=0.1))
    _fit(b, 2, fastnn.SGD(lr=0.1))
    assert a.params.tobytes() != b.params.tobytes()


def test_a_loaded_model_has_no_seed(tmp_path):
    _model().save(tmp_path / "m.npz")
    assert fastnn.load(tmp_path / "m.npz").seed is None


SCRIPT = """
import hashlib, numpy as np, fastnn
rng = np.random.default_rng(0)
X = rng.standard_normal((200, 5)); y = (X[:, 0] > 0).astype(int)
model = fastnn.MLP([5, 32, 2], seed=3, dropout=0.1)
model.fit(X, y, "cross_entropy", "adam", epochs=3, validation_split=0.2)
ens = fastnn.MLPEnsemble([5, 8, 2], 2, seed=4)
ens.fit(X, y, "cross_entropy", "adam", epochs=2, validation_split=0.2)
digest = hashlib.sha256(model.params.tobytes())
for m in ens.members:
    digest.update(m.params.tobytes())
print(digest.hexdigest())
"""


def test_the_same_script_gives_the_same_bits_in_two_processes():
    env = dict(os.environ, PYTHONPATH=FASTNN_PARENT + os.pathsep +
               os.environ.get("PYTHONPATH", ""))
    outs = [subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                           env=env, cwd=FASTNN_PARENT, check=True).stdout for _ in range(2)]
    assert outs[0] == outs[1] and len(outs[0].strip()) == 64


# ------------------------------------------------------------------ ensembles

def _ensemble(seed=3):
    return MLPEnsemble([4, 8, 3], 3, activation="tanh", dtype=np.float64, seed=seed,
                       dropout=0.1)


def _fit_ens(ens, epochs, opt="adam", **kwargs):
    return ens.fit(*_data(), "cross_entropy", opt, epochs=epochs, n_threads=2, **FIT,
                   **kwargs)


def _bits(ens):
    return b"".join(m.params.tobytes() for m in ens.members)


def test_an_ensembles_fit_seed_derives_its_members_streams():
    plain, same, other = _ensemble(), _ensemble(), _ensemble()
    _fit_ens(plain, 3)
    _fit_ens(same, 3, seed=3)        # the ensemble's own seed: the fit without a seed
    _fit_ens(other, 3, seed=8)
    assert _bits(plain) == _bits(same) != _bits(other)
    assert other.member_fit_seeds(8) == _ensemble(seed=8).member_seeds
    assert plain.member_fit_seeds(None) == plain.member_seeds
    # member k alone, with its fit seed, gives its bits
    X, y = _data()
    for k, s in enumerate(other.member_fit_seeds(8)):
        alone = fastnn.MLP([4, 8, 3], activation="tanh", dtype=np.float64,
                           seed=other.member_seeds[k], dropout=0.1)
        alone.fit(X, y, "cross_entropy", "adam", epochs=3, seed=s, n_threads=1, **FIT)
        assert alone.params.tobytes() == other.members[k].params.tobytes()


@pytest.mark.parametrize("seed", [None, 11], ids=["member-seeds", "fit-seed"])
def test_a_continued_ensemble_fit_equals_one_long_fit(seed):
    parts, whole = _ensemble(), _ensemble()
    opt = fastnn.Adam(lr=0.01)
    _fit_ens(parts, 2, opt, seed=seed)
    _fit_ens(parts, 2, opt, seed=seed)       # the same optimizer: the members continue
    _fit_ens(whole, 4, copy.deepcopy(fastnn.Adam(lr=0.01)), seed=seed)
    assert _bits(parts) == _bits(whole)


def test_a_generator_seed_is_drawn_from():
    a, b, c = _ensemble(), _ensemble(), _ensemble()
    _fit_ens(a, 1, seed=np.random.default_rng(1))
    _fit_ens(b, 1, seed=np.random.default_rng(1))
    _fit_ens(c, 1)
    assert _bits(a) == _bits(b) != _bits(c)
