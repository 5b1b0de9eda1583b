"""fastnn.threads: the BLAS thread count of fastnn's products, and deterministic results."""
import numpy as np
import pytest

import fastnn
from fastnn import threads
from fastnn.datasets import make_spirals


def test_set_and_get_num_threads_round_trip():
    before = threads.get_num_threads()
    assert before is not None and before >= 1  # scipy's wheels ship OpenBLAS
    try:
        assert threads.set_num_threads(1) == before
        assert threads.get_num_threads() == 1
        with threads.blas_threads(2):
            assert threads.get_num_threads() == 2
        assert threads.get_num_threads() == 1
    finally:
        threads.set_num_threads(before)
    with pytest.raises(ValueError, match="n_threads=0; expected n_threads >= 1"):
        threads.set_num_threads(0)


def test_fit_with_n_threads_restores_the_setting_and_is_deterministic():
    X, y = make_spirals(400, seed=0)
    before = threads.get_num_threads()
    results = {}
    for n in (1, 2, 1, 2):
        model = fastnn.MLP([2, 256, 256, 3], seed=0)
        fastnn.fit(model, X, y, "cross_entropy", fastnn.Adam(lr=0.01), epochs=2,
                   batch_size=128, seed=0, n_threads=n)
        assert threads.get_num_threads() == before
        if n in results:  # the same thread count gives the same bits
            np.testing.assert_array_equal(model.params, results[n])
        results[n] = model.params.copy()
    with pytest.raises(ValueError, match="n_threads=0; expected n_threads >= 1"):
        fastnn.fit(fastnn.MLP([2, 3]), X, y, "cross_entropy", n_threads=0)
