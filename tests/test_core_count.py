"""Results must not depend on the number of cores the process may use.

fastnn's default thread count is the cores available, and so is the thread count of the
BLAS libraries (scipy's and NumPy's OpenBLAS), whose long dot products split their sums
over those threads.  Any reduction fastnn leaves to a BLAS outside its compiled calls
(scipy's L-BFGS-B, a NumPy dot) would make the bits follow the core count.  Each result is
computed in two child processes, one pinned to a single core and one on two cores, and the
digests must agree (tests/_core_count_worker.py; OPENBLAS_NUM_THREADS removed, so the BLAS
libraries size their pools from the cores as a user's process does).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastnn

WORKER = Path(__file__).with_name("_core_count_worker.py")


def _digests(cores):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    # the fastnn this test imported (the installed one under `pip install . && pytest`)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(fastnn.__file__))
    out = subprocess.run([sys.executable, "-W", "ignore", str(WORKER), cores], env=env,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    return dict(line.split() for line in out.splitlines())


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two cores to compare one core with two")
def test_results_are_the_same_bits_on_one_core_and_on_two():
    cores = sorted(os.sched_getaffinity(0))[:2]
    one, two = _digests(str(cores[0])), _digests(f"{cores[0]},{cores[1]}")
    assert one.keys() >= {"lbfgs", "val_metric"}
    assert one == two
