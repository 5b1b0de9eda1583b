"""The columns of a table as ONNX graph inputs: what ``fastnn.interop.onnx_export`` puts in
front of a ``fastnn train`` model whose preprocessing encodes columns (one-hot categories,
ISO dates; ``fastnn.io.columns``).

Such a graph takes one input per feature column, named as the column and shaped (N, 1), in
the way scikit-learn's ONNX converter presents a ``ColumnTransformer`` over a table:

* a number or a date: ``tensor(double)``; NaN where missing.  A date is the days since
  1970-01-01 00:00 UTC that ``fastnn predict`` computes from the ISO text
  (``fastnn.io.columns.iso_days``): ONNX has no operator that parses a date.
* a category (text or booleans): ``tensor(string)``, the cell's text stripped of surrounding
  blanks, as the csv reader gives it.  ``ai.onnx.ml.LabelEncoder`` maps each level's text
  (a boolean level under every True/False spelling the reader accepts: True, TRUE, true) to
  its index and any other text, an empty or missing cell included, to -1; ``Equal`` against
  the indices 0..k-1 gives the indicators, so an unseen level or a missing cell is all
  zeros, as in ``fastnn predict``.  Text is compared exactly: where ``fastnn predict`` read a
  whole column of numbers (3.0 matching the level "3"), pass the text "3".

The blocks are concatenated in the model's input order into an (N, n_inputs) float64 tensor,
on which the element-wise steps (imputation, standardisation) follow as for a table of
numbers.  A model whose columns are all numbers keeps the single input ``X``.
"""
import numpy as np

from fastnn.io.columns import level_text
from fastnn.io.tabular import PRECISION

__all__ = ["onnx_feeds", "encodes_columns", "encoded_columns", "ML_DOMAIN", "ML_OPSET"]

ML_DOMAIN = "ai.onnx.ml"
#: LabelEncoder with string keys and int64 values (ai.onnx.ml 2, onnxruntime >= 1.1)
ML_OPSET = 2


def encodes_columns(pre):
    """Whether the graph of a model with Preprocessor `pre` takes one input per column."""
    return any(c.kind != "number" for c in pre.columns)


def encoded_columns(g, pre):
    """Graph inputs, one per column of `pre`, and the nodes encoding them.

    Parameters
    ----------
    g : fastnn.interop.onnx_export._Graph
    pre : fastnn.io.tabular.Preprocessor

    Returns
    -------
    x : str
        The (N, n_inputs) float64 tensor of encoded inputs (NaN where a number is missing).
    inputs : list of (str, int, list)
        (name, ONNX element type, shape) of each graph input, in column order.
    """
    helper = g.onnx.helper
    double = helper.np_dtype_to_tensor_dtype(np.dtype(PRECISION))
    inputs, blocks = [], []
    for c in pre.columns:
        if c.kind != "category":
            inputs.append((c.name, double, ["N", 1]))
            blocks.append(c.name)
            continue
        inputs.append((c.name, g.onnx.TensorProto.STRING, ["N", 1]))
        keys = c.level_keys()
        index = g.node("LabelEncoder", [c.name], stem="level", domain=ML_DOMAIN,
                       keys_strings=list(keys), values_int64s=list(keys.values()),
                       default_int64=-1)
        levels = g.const("levels", np.arange(c.width, dtype=np.int64)[None, :])
        hot = g.node("Equal", [index, levels], stem="is_level")       # (N, k) bool
        blocks.append(g.node("Cast", [hot], stem="onehot", to=double))
    x = blocks[0] if len(blocks) == 1 else g.node("Concat", blocks, stem="columns", axis=1)
    return x, inputs


def onnx_feeds(model, table):
    """The inputs the exported graph of a ``fastnn train`` model takes, from a table.

    What ``fastnn predict`` reads, shaped for ``onnxruntime.InferenceSession.run``: one
    array per column (a category's cells as text, a date's as days since 1970-01-01), or
    ``{"X": ...}`` for a model of numbers alone.

    Parameters
    ----------
    model : fastnn.MLP
        With ``preprocessor_`` (a model saved by ``fastnn train``).
    table : fastnn.io.reader.Table
        Columns found by name, in any order; others are ignored.

    Returns
    -------
    dict of str -> ndarray of shape (N, 1) (float64, or object holding str), or of shape
    (N, n_features) for ``X``

    Raises
    ------
    TableError
        A column the model needs is absent, or does not read as its kind.
    ValueError
        `model` has no table preprocessing.
    """
    pre = getattr(model, "preprocessor_", None)
    if pre is None:
        raise ValueError("the model has no table preprocessing (preprocessor_ is None); "
                         "its graph takes X as the model's inputs")
    pre.select(table)   # the same checks (absent columns, kinds) as fastnn predict
    feeds = {}
    for c in pre.columns:
        col = table.data[c.name]
        if c.kind == "category":
            # each cell's level text as predict matches it (fastnn.io.columns)
            text = [("" if t is None else t) for t in map(level_text, col)]
            feeds[c.name] = np.array(text, dtype=object)[:, None]
        else:
            feeds[c.name] = c.encode(table)[0]
    if not encodes_columns(pre):
        return {"X": np.concatenate([feeds[c.name] for c in pre.columns], axis=1)}
    return feeds
