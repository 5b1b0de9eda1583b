#!/usr/bin/env bash
# Build fastnn with AddressSanitizer + UndefinedBehaviorSanitizer and run the tests of the
# compiled code (kernels, losses, model, training loop, and the bad-input, thread, safety and
# hypothesis/fuzz tests, which drive its error paths and its checks at the compiled boundary)
# against that build.
#
#     bash tests/sanitize.sh                 # from anywhere; uses `python` (or $PYTHON)
#     bash tests/sanitize.sh -k gradient     # extra arguments go to pytest
#     FASTNN_SANITIZE_KEEP=1 bash tests/sanitize.sh   # keep the build directory (debugging)
#
# The sanitized build goes to a temporary directory that is deleted afterwards: the in-place
# .so files of the checkout and any installed fastnn are never touched.  The tests import that
# copy (PYTHONPATH puts it first), and the script checks that they did.
#
# How, and why these settings:
#   FASTNN_SANITIZE=1   setup.py compiles with -fsanitize=address,undefined -O1 -g and
#                       -fno-sanitize-recover=undefined: any UB report aborts the run.
#   LD_PRELOAD=libasan  the interpreter itself is not instrumented, so the ASan runtime must be
#                       loaded before anything else for the extension modules to load at all.
#   detect_leaks=0      CPython keeps many allocations alive until exit by design; leak checks
#                       of fastnn's own code are done by tests/test_memory.py instead.
#   allocator_may_return_null=1
#                       a huge request makes malloc return NULL (so fastnn's MemoryError path
#                       runs) instead of ASan aborting the process.
# Needs gcc's libasan and Cython (installed into the current environment if missing).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python}
work=$(mktemp -d "${TMPDIR:-/tmp}/fastnn-sanitize.XXXXXX")
trap '[ -n "${FASTNN_SANITIZE_KEEP:-}" ] || rm -rf "$work"' EXIT
start=$(date +%s)

# -- a copy of the sources as they are on disk: every file git does not ignore (build outputs
#    are ignored), or, outside a git checkout, the directories minus build outputs
cd "$root"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard -- \
        setup.py pyproject.toml src_c fastnn tests \
        | while IFS= read -r -d '' f; do if [ -e "$f" ]; then cp --parents "$f" "$work"; fi; done
else
    cp -r setup.py pyproject.toml src_c fastnn tests "$work"
    rm -f "$work"/fastnn/_core/*.so "$work"/fastnn/_core/*.c
fi

# -- the sanitized build
"$py" -c "import Cython" 2>/dev/null || "$py" -m pip install -q "Cython>=3" "setuptools>=64"
libasan=$(gcc -print-file-name=libasan.so)
[ -e "$libasan" ] || { echo "sanitize.sh: gcc's libasan.so not found" >&2; exit 1; }
echo "== building a sanitized fastnn in $work"
(cd "$work" && FASTNN_SANITIZE=1 FASTNN_BUILD_JOBS=2 "$py" setup.py -q build_ext --inplace -j 2 \
    >build.log 2>&1) || { cat "$work/build.log"; exit 1; }
# (not `ldd | grep -q`: grep exits at the first match and pipefail reports ldd's SIGPIPE)
ldd "$work"/fastnn/_core/_layers.*.so >"$work/ldd.txt"
grep -q libasan "$work/ldd.txt" || { echo "sanitize.sh: the build is not instrumented" >&2; exit 1; }
echo "== build took $(( $(date +%s) - start )) s"

# -- the tests of the compiled code, importing the sanitized copy
export LD_PRELOAD="$libasan"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONPATH="$work${PYTHONPATH:+:$PYTHONPATH}"
export FASTNN_SANITIZED=1   # lets tests skip what ASan cannot do (address-space limits)
cd "$work"
"$py" -c "import fastnn, sys; sys.exit(not fastnn.__file__.startswith('$work'))" \
    || { echo "sanitize.sh: the tests would not import the sanitized build" >&2; exit 1; }
# and the sanitizer is live: a deliberate out-of-bounds read (ctypes copying 4 KB out of a
# 16-byte NumPy buffer; fastnn's own entry points all check their buffers now) must be
# caught, not pass silently
canary="import ctypes, numpy as np
a = np.ones(2)
ctypes.string_at(a.ctypes.data, 4096)"
# (in a subshell, so that bash's "Aborted" notice goes to the log too)
if ("$py" -c "$canary") 2>"$work/canary.log"; then
    echo "sanitize.sh: ASan missed a deliberate out-of-bounds read" >&2; exit 1
fi
grep -q "AddressSanitizer: heap-buffer-overflow" "$work/canary.log" \
    || { cat "$work/canary.log"; echo "sanitize.sh: the canary failed otherwise" >&2; exit 1; }
echo "== ASan is live (caught the deliberate out-of-bounds read)"
# the bad-input, thread and fault tests that live beside the other tests of their module
robustness_tests=(
    tests/test_threads.py::test_two_models_trained_at_once_equal_the_same_trained_one_after_another
    tests/test_threads.py::test_concurrent_predict_calls_on_one_model_are_safe
    tests/test_threads.py::test_kernels_and_predict_release_the_gil
    tests/test_threads.py::test_results_are_deterministic_for_a_given_blas_thread_count
    tests/test_threads.py::test_blas_thread_counts_are_validated_not_wrapped
    tests/test_training.py::test_a_batch_larger_than_the_data_even_beyond_32_bits_is_one_full_batch
    tests/test_sklearn.py::test_estimators_name_bad_sample_weights
    tests/test_sklearn.py::test_estimators_list_valid_names
    tests/test_sklearn.py::test_estimators_give_the_same_model_for_any_layout
    tests/test_sklearn.py::test_a_diverging_estimator_fit_leaves_a_usable_estimator
    tests/test_io.py::test_a_save_killed_midway_leaves_the_previous_file_intact
    tests/test_cli.py::test_the_command_line_reports_bad_data_in_one_line
    tests/test_cli.py::test_the_command_line_reports_a_diverged_run_in_one_line
    tests/test_distributed.py::test_distributed_helpers_name_bad_arguments
)
"$py" -m pytest -q -p no:cacheprovider \
    tests/test_layers.py tests/test_losses.py tests/test_model.py tests/test_trainer.py \
    tests/test_theory.py tests/test_validation.py tests/test_layouts.py tests/test_memory.py \
    tests/test_divergence.py tests/test_properties.py \
    tests/test_safety.py tests/test_safety_fuzz.py tests/test_sensitivity.py \
    tests/test_pool.py tests/test_thread_count.py "${robustness_tests[@]}" "$@"
echo "== sanitizer run passed in $(( $(date +%s) - start )) s"
