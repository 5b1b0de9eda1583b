"""
Which inputs matter: a sensitivity ranking with error bars
==========================================================

The borehole function (Harper & Gupta 1983, a standard test of surrogate models) gives the
water flow through a borehole from 8 inputs.  A deep ensemble of 5 networks is fitted to
1,500 samples as a surrogate; its compiled backward pass gives ``d flow / d input`` at every
point (:meth:`fastnn.MLPEnsemble.jacobian`, no finite differences), and the
derivative-based global sensitivity measure ``E[(df/du_c)^2]`` (Sobol' & Kucherenko 2009;
``u_c`` the input scaled to [0, 1]) ranks the inputs, with the members' spread as an error
bar.  The true function's ranking (central differences, affordable because it is cheap) is
drawn beside it.  ``examples/sensitivity.py`` in the repository is the longer version.
"""
import matplotlib.pyplot as plt
import numpy as np

import fastnn

NAMES = ["r_w", "r", "T_u", "H_u", "T_l", "H_l", "L", "K_w"]
LOW = np.array([0.05, 100.0, 63070.0, 990.0, 63.1, 700.0, 1120.0, 9855.0])
HIGH = np.array([0.15, 50000.0, 115600.0, 1110.0, 116.0, 820.0, 1680.0, 12045.0])


def borehole(U):
    """Flow (m^3/yr) at inputs U scaled to [0, 1], shape (n, 8) -> (n,)."""
    rw, r, Tu, Hu, Tl, Hl, L, Kw = (LOW + U * (HIGH - LOW)).T
    log_ratio = np.log(r / rw)
    return 2 * np.pi * Tu * (Hu - Hl) / (
        log_ratio * (1 + 2 * L * Tu / (log_ratio * rw ** 2 * Kw) + Tu / Tl))


rng = np.random.default_rng(0)
U = rng.random((1500, 8))
flow = borehole(U)
mean, scale = flow.mean(), flow.std()
ens = fastnn.MLPEnsemble([8, 64, 64, 1], n_members=5, activation="tanh", dtype=np.float64,
                         seed=0)
ens.fit(U, ((flow - mean) / scale)[:, None], "mse", fastnn.Adam(lr=3e-3), epochs=60,
        batch_size=64)

U_test = rng.random((1000, 8))
truth = borehole(U_test)
pred = ens.predict(U_test)[:, 0] * scale + mean
print(f"surrogate R^2 on 1,000 new points: {1 - np.mean((pred - truth) ** 2) / truth.var():.4f}")

# each member's DGSM, normalized to shares that sum to 1
members = np.stack([m.jacobian(U_test)[:, 0, :] * scale for m in ens.members])
nu = (members ** 2).mean(axis=1)
share = nu / nu.sum(axis=1, keepdims=True)
h = 1e-6
true_grad = np.stack([(borehole(U_test + h * e) - borehole(U_test - h * e)) / (2 * h)
                      for e in np.eye(8)], axis=1)
nu_true = (true_grad ** 2).mean(axis=0)
share_true = nu_true / nu_true.sum()

order = np.argsort(-share.mean(axis=0))
pos = np.arange(8)
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.bar(pos - 0.2, share.mean(axis=0)[order], 0.4, yerr=share.std(axis=0)[order], capsize=3,
       label="surrogate (mean +- std over members)")
ax.bar(pos + 0.2, share_true[order], 0.4, label="true function")
ax.set_xticks(pos, [NAMES[c] for c in order])
ax.set(ylabel="share of E[(df/du)^2]", yscale="log", title="global sensitivity ranking")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
