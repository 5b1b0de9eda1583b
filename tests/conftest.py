"""Fixtures that several test modules share."""
import numpy as np
import pytest

from fastnn.runtime import boundary
from tests._helpers import epoch_call_kwargs


def _epoch_kwargs(model, X, labels, batch, /, **change):  # (change may hold X or labels)
    """The compiled dense epoch's keyword arguments (``_epoch.train_epoch``, and the
    boundary's ``prepare_epoch``) for a correct call -- class labels, plain SGD, no optimizer
    state -- with `change` applied to the flat values (tests/_helpers.epoch_call_kwargs).
    X None with ``csr=(data, indices, indptr, n_features)`` in `change`: a CSR row source."""
    spec, dt = model._spec, model.dtype
    args = dict(spec=spec, params=model.params, grads=model.grads,
                state1=np.zeros(0, dt), state2=np.zeros(0, dt), X=X, Y=None, labels=labels,
                sample_weight=None, sigma=None, order=np.arange(labels.shape[0], dtype=np.intp),
                batch_size=batch, drop_last=False, loss_kind=4, loss_full=0,
                sigma_scalar=1.0, opt_kind=boundary.OPT_SGD, lr=0.01, momentum=0.0,
                nesterov=False, weight_decay=0.0, clip_norm=0.0, beta1=0.0, beta2=0.0,
                eps=0.0, t0=0, acts=np.empty(batch * spec.act_width, dt),
                delta0=np.empty(batch * spec.max_width, dt),
                delta1=np.empty(batch * spec.max_width, dt),
                X_batch=None if X is None else np.empty((batch, X.shape[1]), dt), Y_batch=None,
                labels_batch=np.empty(batch, np.intp), sw_batch=None, sigma_batch=None,
                check_every=-1.0)
    args.update(change)
    return epoch_call_kwargs(args)


@pytest.fixture
def epoch_kwargs():
    """``epoch_kwargs(model, X, labels, batch, **change)``: the dense epoch's arguments for a
    correct call with `change` applied, for the tests that break one argument at a time."""
    return _epoch_kwargs
