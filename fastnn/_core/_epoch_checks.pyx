"""The checks a compiled epoch's buffers pass before its loop trusts them
(fastnn/_core/_epoch.pyx prepares epochs and runs them): every size against the network, the
row source and the batch, and which memory the epochs write against every byte they touch.
"""
from libc.limits cimport INT_MAX

from fastnn._core._losses cimport check_target_sizes
from fastnn._core._network cimport NetSpec, check_net
from fastnn._core._sgd cimport _check_optimizer
from fastnn._core._loop cimport local_row


cdef int check_epoch_buffers(NetSpec spec, Py_ssize_t n_params, Py_ssize_t n_grads,
                             Py_ssize_t n_s1, Py_ssize_t n_s2, Py_ssize_t n, Py_ssize_t n_in,
                             Py_ssize_t y_rows, Py_ssize_t y_cols, Py_ssize_t n_labels,
                             Py_ssize_t n_sw, Py_ssize_t n_sigma,
                             const Py_ssize_t[::1] order, Py_ssize_t batch_size,
                             int loss_kind, int opt_kind, double momentum, long long t0,
                             Py_ssize_t n_acts, Py_ssize_t n_d0, Py_ssize_t n_d1,
                             Py_ssize_t xb_rows, Py_ssize_t xb_cols, Py_ssize_t yb_rows,
                             Py_ssize_t yb_cols, Py_ssize_t n_lb, Py_ssize_t n_swb,
                             Py_ssize_t n_sigmab, Py_ssize_t row_offset,
                             bint distributed) except -1:
    """Raise ValueError unless every buffer of train_epoch fits the network and the batch.

    Sizes only (-1 for an absent array), compared in C: O(1), plus one pass over `order`.
    """
    cdef Py_ssize_t i, n_order, rows, bad = -1
    check_net(spec, n_params, n_grads - (2 if distributed else 0), n_in, n)
    check_target_sizes(loss_kind, n, spec.net.sizes[spec.net.n_layers], y_rows, y_cols,
                       n_labels, n_sw, n_sigma)
    _check_optimizer(opt_kind, momentum, n_params, n_s1, n_s2, t0)
    if batch_size < 1 or batch_size > INT_MAX:
        raise ValueError(f"batch_size={batch_size}; expected 1 .. {INT_MAX}")
    if row_offset < 0:
        raise ValueError(f"row_offset={row_offset}; expected >= 0")
    n_order = n if order is None else order.shape[0]
    rows = min(batch_size, n_order)  # the most rows one minibatch holds
    if rows == 0:
        return 0
    # (Python integers: the C products could overflow for absurd widths)
    for name, have, per_row in (("acts", n_acts, spec.net.act_width),
                                ("delta0", n_d0, spec.net.max_width),
                                ("delta1", n_d1, spec.net.max_width)):
        if have < (<object> rows) * per_row:
            raise ValueError(f"the workspace {name} has {max(have, 0)} entries; a batch of "
                             f"{rows} rows needs {(<object> rows) * per_row}")
    if order is None:
        return 0
    # every index >= 0; without ranks, every index a row of X too: there are no other
    # ranks' samples, and the gather would drop such an index from its batch silently
    with nogil:
        for i in range(n_order):
            if order[i] < 0 or (not distributed and local_row(order[i], row_offset, n) < 0):
                bad = i
                break
    if bad >= 0 and order[bad] < 0:
        raise ValueError(f"order[{bad}] is {order[bad]}; expected sample indices >= 0")
    if bad >= 0:
        expected = (f"the indices of X's {n} rows, {row_offset} .. {row_offset + n - 1}"
                    if n else "none: X has no rows")
        raise ValueError(f"order[{bad}] is {order[bad]}; expected {expected} (row_offset="
                         f"{row_offset}, no reducer: every sample is this process's)")
    for name, buf_rows, buf_cols, source_cols in (
            ("X_batch", xb_rows, xb_cols, n_in), ("Y_batch", yb_rows, yb_cols, y_cols),
            ("labels_batch", n_lb, -2, n_labels), ("sw_batch", n_swb, -2, n_sw),
            ("sigma_batch", n_sigmab, -2, n_sigma)):
        if source_cols == -1:   # no such input: its batch buffer is not used
            continue
        two_d = buf_cols != -2
        if buf_rows != -1 and buf_rows >= rows and not (two_d and buf_cols != source_cols):
            continue
        needed = f"({rows}, {source_cols})" if two_d else f"({rows},)"
        if buf_rows == -1:
            raise ValueError(f"{name} is missing; a batch of {rows} rows needs one of shape "
                             f"at least {needed}")
        if buf_rows < rows or (two_d and buf_cols != source_cols):
            shape = f"({buf_rows}, {buf_cols})" if two_d else f"({buf_rows},)"
            raise ValueError(f"{name} has shape {shape}; a batch of {rows} rows needs at "
                             f"least {needed}")
    return 0


cdef int check_disjoint(list calls) except -1:
    """ValueError when memory one call writes is also written or read by another buffer of
    any call, its own included (a task reading memory another task writes races, and an
    epoch whose gather overwrites its own X trains on garbage); buffers that are only read
    (the members' shared X and y) may overlap.  `calls`: each call's (written, read) span
    lists.  Sorted spans, one sweep: O(m log m)."""
    spans = []
    for k, (written, read) in enumerate(calls):
        spans.extend((start, end, k, name, True) for start, end, name in written)
        spans.extend((start, end, k, name, False) for start, end, name in read)
    spans.sort()
    last_any = last_written = None      # the span reaching furthest so far (written ones)
    for span in spans:
        start, end, k, name, writes = span
        other = last_any if writes else last_written
        if other is not None and other[1] > start:
            a, b = (other, span) if other[4] else (span, other)
            who = (lambda k: f"calls[{k}]") if len(calls) > 1 else (lambda k: "the epoch")
            raise ValueError(
                f"{who(a[2])} writes its {a[3]} in memory that {who(b[2])} "
                f"{'writes' if b[4] else 'reads'} as its {b[3]}: the epochs would use "
                "overlapping buffers; each needs its own model, optimizer state and "
                "workspace, none of them in the data it reads")
        if last_any is None or end > last_any[1]:
            last_any = span
        if writes and (last_written is None or end > last_written[1]):
            last_written = span
    return 0


cdef int check_apart(list spans, const char *p, Py_ssize_t nbytes, str name) except -1:
    """ValueError when the `nbytes` at `p`, which a group of epochs writes, overlap any of
    the call's `spans` (its own span, the same pointer, length and name, excepted)."""
    cdef Py_ssize_t start, end, lo = <Py_ssize_t> p, hi = <Py_ssize_t> p + nbytes
    for start, end, other in spans:
        if start == lo and end == hi and other == name:
            continue
        if start < hi and lo < end:
            raise ValueError(f"{name} overlaps the epoch's {other}; expected a buffer of "
                             "its own")
    return 0
