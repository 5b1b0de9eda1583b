"""fastnn.AdamW against torch.optim.AdamW (the independent reference), and its reach: the
epoch loop with schedules, the estimators, the command line and the model file.

The compiled update, the sparse loop, thread-count independence and ensembles are covered
with the other optimizers in test_trainer.py (the NumPy reference), test_sparse_training.py,
test_thread_count.py and test_ensemble.py ("adamw" entries of their tables)."""
import numpy as np
import pytest

import fastnn
from fastnn.cli import command as cli

torch = pytest.importorskip("torch")

#: fastnn against PyTorch after several steps: float64 to rounding; float32 differs in the
#: order of the products' sums, amplified by Adam's division by sqrt(v)
RTOL = {np.float64: 1e-10, np.float32: 2e-4}
ATOL = {np.float64: 1e-12, np.float32: 2e-5}
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def _data(n=45, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)), rng.integers(0, 3, n)


def _model(dtype):
    return fastnn.MLP([5, 8, 6, 3], activation=["tanh", "relu"], dtype=dtype, seed=1,
                      bias_init=0.1)


def _torch_twin(model, lr, weight_decay):
    """The model's network in PyTorch (its logits) and a torch.optim.AdamW that decays the
    weight matrices and not the biases, as fastnn does (PyTorch's usual parameter groups)."""
    seq = model.to_torch()
    if not isinstance(seq[-1], torch.nn.Linear):  # the output link: the loss takes logits
        seq = seq[:-1]
    weights = [p for name, p in seq.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in seq.named_parameters() if name.endswith("bias")]
    opt = torch.optim.AdamW([{"params": weights}, {"params": biases, "weight_decay": 0.0}],
                            lr=lr, weight_decay=weight_decay)
    return seq, opt


def _torch_params(seq):
    return fastnn.MLP.from_torch(seq).params


def test_the_defaults_are_pytorchs():
    opt, ref = fastnn.AdamW(), torch.optim.AdamW([torch.zeros(1)]).defaults
    assert (opt.lr, (opt.beta1, opt.beta2), opt.eps, opt.weight_decay) == (
        ref["lr"], ref["betas"], ref["eps"], ref["weight_decay"])
    assert repr(opt).startswith("AdamW(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08, "
                                "weight_decay=0.01")
    assert fastnn.optim.optimizers.get_optimizer("adamw").weight_decay == 0.01


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_steps_equal_torch_adamw_with_a_rate_that_changes_every_step(dtype):
    X, y = _data()
    model = _model(dtype)
    seq, topt = _torch_twin(model, lr=0.02, weight_decay=0.3)
    seq.to(TORCH_DTYPE[dtype])
    opt = fastnn.AdamW(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=0.3)
    for group in topt.param_groups:
        group.update(betas=(0.8, 0.99), eps=1e-7)
    Xt, yt = torch.tensor(X, dtype=TORCH_DTYPE[dtype]), torch.tensor(y)
    for step in range(12):
        lr = 0.02 * 0.8 ** step            # a schedule per step, set as PyTorch code sets it
        model.loss_and_grad(X, y, "cross_entropy")
        opt.step(model, lr=lr)
        for group in topt.param_groups:
            group["lr"] = lr
        topt.zero_grad()
        torch.nn.functional.cross_entropy(seq(Xt), yt).backward()
        topt.step()
    assert opt.t == 12
    np.testing.assert_allclose(model.params, _torch_params(seq), rtol=RTOL[dtype],
                               atol=ATOL[dtype])


SCHEDULES = {
    "constant": (None, None),
    "step": (lambda: fastnn.StepDecay(2, 0.5),
             lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)),
    "cosine": (lambda: fastnn.Cosine(total_epochs=5, min_lr=1e-3),
               lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5,
                                                                      eta_min=1e-3)),
}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_fit_equals_a_torch_adamw_training_loop_in_float64(schedule):
    # 45 samples in batches of 8: five full batches and a last one of 5, shuffled per epoch
    # by default_rng([seed, epoch]) (fastnn.training.engine.epoch_order); the rate per epoch
    X, y = _data()
    model = _model(np.float64)
    seq, topt = _torch_twin(model, lr=0.01, weight_decay=0.2)
    make_schedule, make_scheduler = SCHEDULES[schedule]
    opt = fastnn.AdamW(lr=0.01, weight_decay=0.2,
                       schedule=make_schedule() if make_schedule else None)
    epochs = 3
    history = fastnn.fit(model, X, y, "cross_entropy", opt, epochs=epochs, batch_size=8,
                         seed=4)
    # the same run, continued: a second fit with the optimizer goes on with epochs 4 and 5
    history2 = fastnn.fit(model, X, y, "cross_entropy", opt, epochs=2, batch_size=8, seed=4)
    scheduler = make_scheduler(topt) if make_scheduler else None
    Xt, yt = torch.tensor(X), torch.tensor(y)
    lrs = []
    for epoch in range(epochs + 2):
        lrs.append(topt.param_groups[0]["lr"])
        order = np.random.default_rng([4, epoch]).permutation(len(X))
        for start in range(0, len(X), 8):
            rows = torch.tensor(order[start:start + 8])
            topt.zero_grad()
            torch.nn.functional.cross_entropy(seq(Xt[rows]), yt[rows]).backward()
            topt.step()
        if scheduler is not None:
            scheduler.step()
    np.testing.assert_allclose(history.lr + history2.lr, lrs, rtol=1e-12)
    np.testing.assert_allclose(model.params, _torch_params(seq), rtol=1e-10, atol=1e-12)


def test_zero_weight_decay_is_adam_bit_for_bit_and_decay_is_not_adams_l2():
    X, y = _data()
    runs = {}
    for name, opt in [("adamw0", fastnn.AdamW(lr=0.01, weight_decay=0.0)),
                      ("adam0", fastnn.Adam(lr=0.01)),
                      ("adamw", fastnn.AdamW(lr=0.01, weight_decay=0.1)),
                      ("adam", fastnn.Adam(lr=0.01, weight_decay=0.1))]:
        model = _model(np.float32)
        fastnn.fit(model, X, y, "cross_entropy", opt, epochs=2, batch_size=8, seed=0)
        runs[name] = model.params
    assert runs["adamw0"].tobytes() == runs["adam0"].tobytes()
    assert not np.allclose(runs["adamw"], runs["adam"])


def test_the_decay_shrinks_weights_by_one_minus_lr_decay_and_leaves_biases():
    # a zero gradient: Adam's step is 0 / (0 + eps) = 0, so one step is the decay alone,
    # w <- (1 - lr wd) w on the weight matrices and nothing on the biases (closed form)
    model, start = _model(np.float64), _model(np.float64)
    model.grads[...] = 0
    fastnn.AdamW(lr=0.1, weight_decay=0.5).step(model)
    for layer, ref in zip(model.layers, start.layers):
        np.testing.assert_array_equal(layer.W, ref.W * (1 - 0.1 * 0.5))
        np.testing.assert_array_equal(layer.b, ref.b)


def test_a_saved_adamw_loads_as_adamw_and_an_adam_file_as_adam(tmp_path):
    X, y = _data()
    for cls in (fastnn.AdamW, fastnn.Adam):
        model, opt = _model(np.float64), cls(lr=0.01, weight_decay=0.05)
        model.fit(X, y, "cross_entropy", opt, epochs=2, batch_size=8, seed=0)
        model.save(tmp_path / "m.npz", optimizer=opt)
        loaded, restored = fastnn.load(tmp_path / "m.npz", with_optimizer=True)
        assert type(restored) is cls and repr(restored) == repr(opt)
        # continuing from the file equals continuing in memory
        model.fit(X, y, "cross_entropy", opt, epochs=1, batch_size=8, seed=0)
        loaded.fit(X, y, "cross_entropy", restored, epochs=1, batch_size=8, seed=0)
        assert loaded.params.tobytes() == model.params.tobytes()


def test_the_command_line_trains_with_adamw(tmp_path, capsys):
    X, y = _data(60)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    args = cli.build_parser().parse_args(["train", str(tmp_path / "d.npz"), "--optimizer",
                                          "adamw", "--lr", "0.02"])
    opt = cli._optimizer(args)
    assert type(opt) is fastnn.AdamW and opt.lr == 0.02 and opt.weight_decay == 0.01
    args = cli.build_parser().parse_args(["train", "d.npz", "--optimizer", "adamw",
                                          "--weight-decay", "0.1"])
    assert cli._optimizer(args).weight_decay == 0.1
    args = cli.build_parser().parse_args(["train", "d.npz", "--optimizer", "adam",
                                          "--weight-decay", "0.001"])
    opt = cli._optimizer(args)
    assert type(opt) is fastnn.Adam and opt.weight_decay == 0.001
    assert cli.main(["train", str(tmp_path / "d.npz"), "--optimizer", "adamw", "--epochs",
                     "2", "--quiet", "--save", str(tmp_path / "m.npz")]) == 0
    assert fastnn.load(tmp_path / "m.npz").n_inputs == 5
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "d.npz", "--weight-decay", "-1"])
    assert "--weight-decay: expected a finite number >= 0" in capsys.readouterr().err


def test_the_estimators_solver_adamw():
    sk = pytest.importorskip("fastnn.interop.sklearn")
    X, y = _data(80)
    common = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0, batch_size=16,
                  learning_rate_init=0.01, n_iter_no_change=100)
    with pytest.warns(Warning):  # max_iter reached (ConvergenceWarning)
        plain = sk.MLPClassifier(solver="adam", alpha=0.0, **common).fit(X, y)
    with pytest.warns(Warning):
        zero = sk.MLPClassifier(solver="adamw", alpha=0.0, **common).fit(X, y)
    # no decay: AdamW's update is Adam's, bit for bit
    assert zero.model_.params.tobytes() == plain.model_.params.tobytes()
    with pytest.warns(Warning):
        clf = sk.MLPClassifier(solver="adamw", alpha=0.1, **common).fit(X, y)
    # AdamW with weight_decay=alpha (PyTorch's coefficient, not alpha / batch size)
    assert type(clf._optimizer) is fastnn.AdamW and clf._optimizer.weight_decay == 0.1
    # decoupled decay is no term of the objective: loss_curve_ is the data loss
    assert clf.loss_curve_ == list(clf.model_.history_.loss)
    assert np.linalg.norm(clf.coefs_[0]) < np.linalg.norm(zero.coefs_[0])
    clf.partial_fit(X, y)   # a stochastic solver
    with pytest.raises(ValueError, match="solver"):
        sk.MLPClassifier(solver="adamx").fit(X, y)
