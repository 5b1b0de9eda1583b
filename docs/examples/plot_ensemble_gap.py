"""
Ensemble intervals on data with a gap
=====================================

Five networks trained from different seeds (a deep ensemble, :class:`fastnn.MLPEnsemble`) on
noisy samples of ``sin(x)`` whose noise grows with ``|x|``, with no data in ``(-2, 0)``.  Each
member predicts a mean and a variance (``GaussianNLL("learned")``); the ensemble splits its
predictive variance into the **aleatoric** part (the noise the members learned) and the
**epistemic** part (their disagreement).  Inside the gap the members disagree: the
epistemic band widens where there is no data, while the aleatoric band follows the noise.
"""
import matplotlib.pyplot as plt
import numpy as np

import fastnn

rng = np.random.default_rng(0)
x = rng.uniform(-4, 4, 1200)
x = x[(x < -2) | (x > 0)]
noise = 0.1 + 0.3 * np.abs(x)
y = np.sin(x) + noise * rng.standard_normal(x.size)
X, Y = x[:, None], y[:, None]

ens = fastnn.MLPEnsemble([1, 64, 64, 2], n_members=5, activation="relu", seed=0)
ens.fit(X, Y, fastnn.GaussianNLL("learned"), fastnn.Adam(lr=3e-3), epochs=60, batch_size=64)

grid = np.linspace(-4, 4, 400)[:, None]
d = ens.predict_distribution(grid)
lower, upper = ens.predict_interval(grid, level=0.9)
mean = d.mean[:, 0]
epistemic = np.sqrt(d.epistemic[:, 0])

inside = (grid[:, 0] > -2) & (grid[:, 0] < 0)
print(f"epistemic std: {epistemic[inside].mean():.3f} inside the gap, "
      f"{epistemic[~inside].mean():.3f} where there is data")

fig, ax = plt.subplots(figsize=(8, 4))
ax.axvspan(-2, 0, color="0.92", label="no training data")
ax.plot(x, y, ".", ms=2, color="0.5", label="training data")
ax.fill_between(grid[:, 0], lower[:, 0], upper[:, 0], alpha=0.3, label="90% interval")
ax.fill_between(grid[:, 0], mean - 2 * epistemic, mean + 2 * epistemic, alpha=0.5,
                label="mean +- 2 epistemic std")
ax.plot(grid[:, 0], mean, lw=2, label="ensemble mean")
ax.plot(grid[:, 0], np.sin(grid[:, 0]), "k--", lw=1, label="sin(x)")
ax.set(xlabel="x", ylabel="y", ylim=(-4, 4))
ax.legend(loc="upper left", fontsize=7, ncol=2)
fig.tight_layout()
plt.show()
