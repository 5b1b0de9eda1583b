"""fastnn.interop.torch_interop: MLP.to_torch / MLP.from_torch against PyTorch's own computation.

PyTorch is the independent reference: its nn.Linear, activations and autograd.  Tolerances as
in test_onnx_export (relative to the output's scale: the two GEMMs sum in different orders).
"""
import sys

import numpy as np
import pytest
import torch
from torch import nn

import fastnn
from fastnn.nn.layers import ACTIVATIONS
from fastnn.interop.torch_interop import Exp, GaussianMeanStd, from_torch, to_torch

RTOL = {np.float32: 1e-6, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]
TORCH = {np.float32: torch.float32, np.float64: torch.float64}
LINKS = ["identity", "sigmoid", "softmax", "exp", "gaussian"]


def _close(actual, expected, dtype, rtol=None):
    expected = np.asarray(expected)
    rtol = RTOL[dtype] if rtol is None else rtol
    np.testing.assert_allclose(actual, expected, rtol=rtol,
                               atol=rtol * float(np.abs(expected).max()))


def _model(activation, link, dtype, seed=0):
    # a non-default slope and ELU alpha, so that the round trip shows each is carried over
    model = fastnn.MLP([5, 16, 12, 4], activation=activation, dtype=dtype, seed=seed,
                       negative_slope=0.3, output="auto" if link == "gaussian" else link,
                       alpha=0.7 if activation == "elu" else None)
    if link == "gaussian":
        model.loss_ = model._use_loss(fastnn.GaussianNLL(sigma="learned"))
    return model


def _run(seq, X):
    with torch.inference_mode():
        return seq(torch.from_numpy(X)).numpy()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("link", LINKS)
def test_round_trip_is_bitwise_and_torch_computes_predict(dtype, activation, link):
    model = _model(activation, link, dtype)
    seq = model.to_torch()
    back = fastnn.MLP.from_torch(seq)
    assert back.dtype == model.dtype and back.layer_sizes == model.layer_sizes
    assert back.params.tobytes() == model.params.tobytes()
    assert [layer.activation for layer in back.layers] == \
        [layer.activation for layer in model.layers]
    # the leaky_relu slope and ELU's alpha (0.3 and 0.7) came back
    assert [layer._activation_parameter() for layer in back.layers] == \
        [layer._activation_parameter() for layer in model.layers]
    assert back._link_name() == model._link_name()
    for n in (1, 2000):
        X = np.random.default_rng(n).normal(size=(n, 5)).astype(dtype)
        out = _run(seq, X)
        assert out.dtype == dtype
        if link == "gaussian":   # [mean | std]
            _close(out[:, :2], model.predict(X), dtype)
            _close(out[:, 2:], model.predict_std(X), dtype)
            _close(back.predict_std(X), model.predict_std(X), dtype, rtol=0)
        else:
            _close(out, model.predict(X), dtype)
        np.testing.assert_array_equal(back.predict(X), model.predict(X))


def test_to_torch_layout_and_modules():
    model = fastnn.MLP([3, 4, 2], activation="leaky_relu", negative_slope=0.2, output="softmax",
                       dtype=np.float64, seed=0)
    seq = to_torch(model)
    assert [type(m) for m in seq] == [nn.Linear, nn.LeakyReLU, nn.Linear, nn.Softmax]
    assert seq[1].negative_slope == 0.2 and seq[3].dim == 1
    for linear, layer in zip((seq[0], seq[2]), model.layers):
        assert linear.weight.dtype == torch.float64
        assert linear.weight.shape == (layer.n_out, layer.n_in)      # PyTorch's (out, in)
        np.testing.assert_array_equal(linear.weight.detach().numpy(), layer.W.T)
        np.testing.assert_array_equal(linear.bias.detach().numpy(), layer.b)
    # copies: training one does not move the other
    with torch.no_grad():
        seq[0].weight.add_(1.0)
    assert not np.array_equal(seq[0].weight.detach().numpy(), model.layers[0].W.T)
    assert [type(m) for m in to_torch(fastnn.MLP([2, 3], output="exp"))] == [nn.Linear, Exp]
    assert type(to_torch(fastnn.MLP([2, 3, 2], activation="identity"))[1]) is nn.Identity


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_from_torch_computes_what_torch_computes(dtype):
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(6, 10, bias=False), nn.LeakyReLU(0.05), nn.Linear(10, 8),
                        nn.Tanh(), nn.Linear(8, 7), nn.Linear(7, 5), nn.Sigmoid(),
                        nn.Linear(5, 3), nn.Softmax(dim=-1)).to(TORCH[dtype])
    model = from_torch(seq)
    assert model.dtype == dtype and model.layer_sizes == [6, 10, 8, 7, 5, 3]
    assert [layer.activation for layer in model.layers] == \
        ["leaky_relu", "tanh", "identity", "sigmoid", "identity"]
    assert model.output == "softmax"
    assert not model.layers[0].b.any()       # no bias: zeros
    X = np.random.default_rng(0).normal(size=(300, 6)).astype(dtype)
    _close(model.predict(X), _run(seq, X), dtype)


def test_a_sequential_ending_with_a_linear_gets_the_link_of_its_loss():
    seq = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4))
    model = from_torch(seq)
    assert model.output == "auto"
    X = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    _close(model.predict(X), _run(seq, X), np.float32)     # logits until trained
    model.fit(X, np.arange(50) % 4, "cross_entropy", epochs=1)
    assert model._link_name() == "softmax"


def _train_torch(seq, X, y, loss_fn, lr, steps):
    opt = torch.optim.SGD(seq.parameters(), lr=lr)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(seq(Xt), yt).backward()
        opt.step()


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_torch_training_continued_in_fastnn_matches_continuing_in_torch(task):
    """Train a few steps in PyTorch, import, train on in fastnn: the same as training on in
    PyTorch (full-batch plain SGD, float64, so the two agree to rounding)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4))
    if task == "regression":
        y = np.column_stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2]])
        loss_fn, loss, n_out = nn.MSELoss(), "mse", 2   # both: mean over all entries
    else:
        y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
        loss_fn, loss, n_out = nn.CrossEntropyLoss(), "cross_entropy", 3
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 8), nn.ReLU(),
                        nn.Linear(8, n_out)).double()
    _train_torch(seq, X, y, loss_fn, lr=0.1, steps=5)

    model = from_torch(seq)
    start = model.params.copy()
    model.fit(X, y, loss, fastnn.SGD(lr=0.1), epochs=10, batch_size=len(X), shuffle=False)
    _train_torch(seq, X, y, loss_fn, lr=0.1, steps=10)

    assert not np.allclose(model.params, start)       # it did train
    np.testing.assert_allclose(model.params, from_torch(seq).params, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------ bad input

def _message(seq):
    with pytest.raises((ValueError, TypeError)) as info:
        from_torch(seq)
    return str(info.value)


@pytest.mark.parametrize("seq, fragment", [
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.1), nn.Linear(3, 1), nn.GELU()),
     "module [1] (Dropout"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1), nn.GELU()),
     "module [3] (GELU"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1), nn.ReLU()),
     "module [3] (ReLU: ReLU()) is not supported as the final module"),
    (lambda: nn.Sequential(nn.ReLU(), nn.Linear(2, 3)),
     "module [0] (ReLU: ReLU()) is not supported here: each activation must follow a Linear"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Tanh(), nn.Linear(3, 1)),
     "module [2] (Tanh"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.Softmax(dim=0)), "module [1] (Softmax"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.Softmax(dim=1), nn.Linear(3, 1)),
     "module [1] (Softmax"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Sigmoid()),
     "module [2] (Sigmoid: Sigmoid()) is not supported here: an output link must follow"),
    (lambda: nn.Sequential(nn.Conv1d(1, 1, 1)), "module [0] (Conv1d"),
    (lambda: nn.Sequential(type("MyLinear", (nn.Linear,), {})(2, 3)), "module [0] (MyLinear"),
    (lambda: nn.Sequential(), "empty nn.Sequential"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.Linear(4, 1)),
     "module [1] (Linear(in_features=4, out_features=1, bias=True)) has in_features=4; "
     "expected 3"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.LeakyReLU(-0.1), nn.Linear(3, 1)),
     "LeakyReLU slope of -0.1"),
    (lambda: nn.Sequential(nn.Linear(2, 3).half()), "has dtype torch.float16"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1).double()),
     "module [1] (Linear(in_features=3, out_features=1, bias=True)) has dtype torch.float64 "
     "but the earlier layers have torch.float32"),
    (lambda: nn.Sequential(nn.Linear(2, 3), GaussianMeanStd()), "even number of outputs"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_unsupported_modules_are_named_with_their_index(seq, fragment):
    assert fragment in _message(seq())


def test_non_finite_weights_and_wrong_types():
    seq = nn.Sequential(nn.Linear(2, 3))
    with torch.no_grad():
        seq[0].weight[0, 0] = float("nan")
    assert "layer 0 has NaN or infinite weights" in _message(seq)
    with pytest.raises(TypeError, match="module must be a torch.nn.Sequential; got Linear"):
        from_torch(nn.Linear(2, 3))
    with pytest.raises(TypeError, match="got list"):
        fastnn.MLP.from_torch([nn.Linear(2, 3)])
    with pytest.raises(TypeError, match="model must be a fastnn.MLP; got Sequential"):
        to_torch(nn.Sequential())


def test_missing_torch_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "fastnn.interop.torch_interop")   # re-imported without torch
    model = fastnn.MLP([2, 3])
    with pytest.raises(ImportError, match=r'pip install "fastnn\[torch\]"'):
        model.to_torch()
    with pytest.raises(ImportError, match=r'pip install "fastnn\[torch\]"'):
        fastnn.MLP.from_torch(None)


def test_dropout_travels():
    model = fastnn.MLP([5, 8, 6, 3], activation="gelu", dropout=[0.2, 0.0], seed=0)
    seq = model.to_torch()
    assert [type(m) for m in seq][:4] == [nn.Linear, nn.GELU, nn.Dropout, nn.Linear]
    back = fastnn.MLP.from_torch(seq)
    assert [layer.dropout for layer in back.layers] == [0.2, 0.0, 0.0]
    assert back.params.tobytes() == model.params.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_travels(dtype):
    # was refused by to_torch ("does not translate layer normalization yet")
    rng = np.random.default_rng(0)
    model = fastnn.MLP([5, 8, 1, 3], activation=["silu", "tanh"], normalization="layer",
                       dropout=[0.1, 0.0], output="softmax", dtype=dtype, seed=0)
    for layer in model.layers[:-1]:
        layer.gain = rng.normal(size=layer.n_out)
        layer.shift = rng.normal(size=layer.n_out)
    seq = model.to_torch()
    assert [type(m) for m in seq] == [nn.Linear, nn.LayerNorm, nn.SiLU, nn.Dropout, nn.Linear,
                                      nn.LayerNorm, nn.Tanh, nn.Linear, nn.Softmax]
    X = rng.normal(size=(300, 5)).astype(dtype)
    X[:2] = 0
    _close(_run(seq.eval(), X), model.predict(X), dtype)
    back = from_torch(seq)
    assert back.params.tobytes() == model.params.tobytes()
    assert [layer.normalization for layer in back.layers] == ["layer", "layer", None]
    # PyTorch's own LayerNorm without affine parameters or bias: gain 1, shift 0
    plain = nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4, elementwise_affine=False),
                          nn.ReLU(), nn.Linear(4, 2)).to(TORCH[dtype])
    _close(from_torch(plain).predict(X), _run(plain, X), dtype)


@pytest.mark.parametrize("seq, fragment", [
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3, eps=1e-6), nn.Linear(3, 1)),
     ")) is not supported: eps=1e-06; fastnn's layer normalization uses eps=1e-05"),
    (lambda: nn.Sequential(nn.Linear(2, 4), nn.LayerNorm([2, 2]), nn.Linear(4, 1)),
     "normalized_shape=(2, 2); expected (4,)"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.LayerNorm(3), nn.Linear(3, 1)),
     "module [2] (LayerNorm"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3)), "module [1] (LayerNorm"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3), nn.Sigmoid()),
     "the last Linear is followed by an nn.LayerNorm"),
], ids=["eps", "shape", "after-activation", "final", "before-link"])
def test_unsupported_layer_norms_are_named(seq, fragment):
    assert fragment in _message(seq())


# ------------------------------------------------------------------------ attack (att15)

def test_softplus_above_torchs_default_threshold_matches_in_float64():
    # PyTorch's nn.Softplus returns z itself above threshold=20, 2e-9 short of softplus(z):
    # to_torch must give a module that computes fastnn's exact softplus there too
    model = fastnn.MLP([2, 3, 1], activation="softplus", dtype=np.float64, seed=0)
    model.layers[0].W[...] = [[10.0, -10.0, 1.0], [10.0, 5.0, 1.0]]
    X = np.random.default_rng(0).normal(0.0, 3.0, (200, 2))
    expected = model.predict(X)
    np.testing.assert_allclose(_run(model.to_torch(), X), expected, rtol=1e-13, atol=0)
    np.testing.assert_array_equal(from_torch(model.to_torch()).params, model.params)


@pytest.mark.parametrize("module, fragment", [
    (lambda: nn.Softplus(threshold=1.0), "module [1] (Softplus"),
    (lambda: nn.Softplus(beta=2.0), "module [1] (Softplus"),
    (lambda: nn.ELU(alpha=-1.0), "module [1] (ELU: ELU(alpha=-1.0)) is not supported: alpha=-1.0"),
    (lambda: nn.ELU(alpha=float("nan")), "module [1] (ELU"),
], ids=["softplus-threshold", "softplus-beta", "elu-negative", "elu-nan"])
def test_activation_modules_computing_another_function_are_refused(module, fragment):
    # Softplus(threshold=1) is linear above 1: importing it as fastnn's softplus would change
    # the model's predictions silently (by up to 0.08 here before the fix)
    seq = nn.Sequential(nn.Linear(2, 3), module(), nn.Linear(3, 1))
    assert fragment in _message(seq)


def test_dropout_p_one_is_named_with_the_module():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Dropout(1.0), nn.Linear(3, 1))
    assert "module [2] (Dropout: Dropout(p=1.0, inplace=False)) is not supported: p=1.0" \
        in _message(seq)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nested_sequentials_are_read_in_order(dtype):
    flat = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4), nn.SiLU(),
                         nn.Linear(4, 2), nn.Softmax(dim=1)).to(TORCH[dtype])
    nested = nn.Sequential(nn.Sequential(flat[0], flat[1]),
                           nn.Sequential(nn.Sequential(flat[2], flat[3]), flat[4]), flat[5])
    a, b = from_torch(flat), from_torch(nested)
    np.testing.assert_array_equal(a.params, b.params)
    assert [layer.activation for layer in b.layers] == ["tanh", "silu", "identity"]
    X = np.random.default_rng(1).normal(size=(7, 3)).astype(dtype)
    _close(b.predict(X), _run(nested, X), dtype)
    bad = nn.Sequential(nn.Sequential(nn.Linear(3, 5), nn.ReLU()), nn.Sequential(nn.GRU(5, 5)))
    assert "module [1][0] (GRU" in _message(bad)


def test_to_torch_computes_predict_with_dropout():
    # a new nn.Module is in training mode, where nn.Dropout drops units: to_torch's
    # Sequential computed something else than predict (0.06 off) until put in eval mode
    model = fastnn.MLP([4, 16, 8, 2], dropout=[0.5, 0.3], output="softmax", seed=0)
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    seq = model.to_torch()
    assert not seq.training
    _close(_run(seq, X), model.predict(X), np.float32)


def test_tampered_linear_tensors_are_errors_naming_the_module():
    # before: a bias of another length gave numpy's "could not broadcast input array", a bias
    # of another dtype was converted silently, a meta-device module NotImplementedError
    def seq():
        return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    s = seq()
    s[0].bias = nn.Parameter(torch.zeros(9))
    with pytest.raises(ValueError, match=r"module \[0\].*bias of shape \(9,\); expected a "
                                         r"torch.float32 bias of shape \(4,\)"):
        fastnn.MLP.from_torch(s)
    s = seq()
    s[2].bias = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"module \[2\].*torch.float64 bias"):
        fastnn.MLP.from_torch(s)
    s = seq()
    s[0].weight = nn.Parameter(torch.zeros(4, 3, 1))
    with pytest.raises(ValueError, match=r"module \[0\].*weight of shape \(4, 3, 1\)"):
        fastnn.MLP.from_torch(s)
    s = nn.Sequential(nn.Linear(3, 4, device="meta"), nn.ReLU(), nn.Linear(4, 2, device="meta"))
    with pytest.raises(ValueError, match=r"module \[0\].*meta device"):
        fastnn.MLP.from_torch(s)
