"""
Learning curves, and a run continued
====================================

Train a small classifier on the generated spirals with a held-out fifth of the rows, and draw
the training and validation loss per epoch from the :class:`fastnn.History` that ``fit``
returns.  The run is trained in two calls with the same optimizer: the second ``fit``
continues the first (its epochs are numbered on, its schedule goes on), so the curves join
without a seam.  Compare with one ``fit`` of all the epochs: the same bits.
"""
import matplotlib.pyplot as plt
import numpy as np

import fastnn
from fastnn.datasets import make_spirals

X, y = make_spirals(3000, n_classes=3, seed=0)

model = fastnn.MLP([2, 64, 64, 3], activation="relu", seed=0)
opt = fastnn.Adam(lr=0.01, schedule=fastnn.StepDecay(step_size=10, gamma=0.5))
first = model.fit(X, y, "cross_entropy", opt, epochs=12, batch_size=32, validation_split=0.2)
second = model.fit(X, y, "cross_entropy", opt, epochs=12, batch_size=32, validation_split=0.2)

# the same 24 epochs in one call
whole = fastnn.MLP([2, 64, 64, 3], activation="relu", seed=0)
whole.fit(X, y, "cross_entropy",
          fastnn.Adam(lr=0.01, schedule=fastnn.StepDecay(step_size=10, gamma=0.5)),
          epochs=24, batch_size=32, validation_split=0.2)
print("two fits give the weights of one:", np.array_equal(model.params, whole.params))

fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
for h, label in ((first, "first fit"), (second, "second fit (continues)")):
    ax_loss.plot(h.epoch, h.loss, "o-", ms=3, label=f"training, {label}")
    ax_loss.plot(h.epoch, h.val_loss, "s--", ms=3, label=f"validation, {label}")
    ax_acc.plot(h.epoch, h.val_metric, "o-", ms=3, label=label)
ax_loss.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="accuracy")
ax_loss.legend(fontsize=7)
ax_acc.legend(fontsize=7)
fig.tight_layout()
plt.show()
