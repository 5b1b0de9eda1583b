"""Sensitivity analysis of a fitted surrogate, with its uncertainty.

The borehole function (Harper & Gupta 1983; a standard test of surrogate models) gives the
water flow through a borehole, in m^3/yr, from 8 inputs.  We sample it 2,000 times, fit a
deep ensemble of 5 networks as a surrogate (``fastnn.MLPEnsemble``, members trained in
parallel threads), and then ask the surrogate, not the expensive model, which inputs matter:

* local sensitivities: ``jacobian`` gives d flow / d input at every point, from the compiled
  backward pass (no finite differences), with the ensemble's spread as an error bar;
* a global ranking: the derivative-based global sensitivity measure (DGSM, Sobol' &
  Kucherenko 2009) nu_c = E[(d f / d u_c)^2] over the input box, u_c the input scaled to
  [0, 1], estimated from the surrogate's gradients and checked against the true function's
  (central differences, which the example can afford only because the borehole function is
  cheap).

    python examples/sensitivity.py        # ~10 s on one core
"""
import numpy as np

import fastnn

# name, low, high (Harper & Gupta's ranges)
INPUTS = [("r_w  borehole radius (m)", 0.05, 0.15),
          ("r    radius of influence (m)", 100.0, 50000.0),
          ("T_u  upper transmissivity (m^2/yr)", 63070.0, 115600.0),
          ("H_u  upper head (m)", 990.0, 1110.0),
          ("T_l  lower transmissivity (m^2/yr)", 63.1, 116.0),
          ("H_l  lower head (m)", 700.0, 820.0),
          ("L    borehole length (m)", 1120.0, 1680.0),
          ("K_w  conductivity (m/yr)", 9855.0, 12045.0)]
LOW = np.array([lo for _, lo, _ in INPUTS])
HIGH = np.array([hi for _, _, hi in INPUTS])


def borehole(U):
    """Flow (m^3/yr) at inputs U scaled to [0, 1], shape (n, 8) -> (n,)."""
    rw, r, Tu, Hu, Tl, Hl, L, Kw = (LOW + U * (HIGH - LOW)).T
    log_ratio = np.log(r / rw)
    return 2 * np.pi * Tu * (Hu - Hl) / (
        log_ratio * (1 + 2 * L * Tu / (log_ratio * rw ** 2 * Kw) + Tu / Tl))


def main():
    rng = np.random.default_rng(0)
    U = rng.random((2000, 8))
    flow = borehole(U)
    mean, scale = flow.mean(), flow.std()       # fit a standardized target

    ens = fastnn.MLPEnsemble([8, 64, 64, 1], n_members=5, activation="tanh",
                             dtype=np.float64, seed=0)
    ens.fit(U, ((flow - mean) / scale)[:, None], "mse", fastnn.Adam(lr=3e-3), epochs=150,
            batch_size=64)
    U_test = rng.random((2000, 8))
    truth = borehole(U_test)
    pred = ens.predict(U_test)[:, 0] * scale + mean
    print(f"surrogate: R^2 on 2,000 new points = "
          f"{1 - np.mean((pred - truth) ** 2) / truth.var():.5f}")

    # d flow / d u_c at every test point: (n, 1, 8) -> (n, 8), back in m^3/yr per unit of u
    J, J_std = ens.jacobian(U_test, return_std=True)
    grad, grad_std = J[:, 0, :] * scale, J_std[:, 0, :] * scale
    h = 1e-6
    true_grad = np.stack([(borehole(U_test + h * e) - borehole(U_test - h * e)) / (2 * h)
                          for e in np.eye(8)], axis=1)

    point = 0
    print(f"\nlocal sensitivities at test point {point} (d flow / d u, u scaled to [0, 1]):")
    print(f"{'input':36s} {'surrogate':>12s} {'+- members':>11s} {'true':>12s}")
    for c, (name, _, _) in enumerate(INPUTS):
        print(f"{name:36s} {grad[point, c]:12.3f} {grad_std[point, c]:11.3f} "
              f"{true_grad[point, c]:12.3f}")

    # DGSM, normalized to sum to 1, with the members' spread of the estimate
    members = np.stack([m.jacobian(U_test)[:, 0, :] * scale for m in ens.members])
    nu_members = (members ** 2).mean(axis=1)                 # (members, 8)
    nu_true = (true_grad ** 2).mean(axis=0)
    share = nu_members / nu_members.sum(axis=1, keepdims=True)
    share_true = nu_true / nu_true.sum()
    print("\nglobal ranking: DGSM share E[(df/du_c)^2] / sum_c (surrogate: mean +- std over "
          "members)")
    for c in np.argsort(-share.mean(axis=0)):
        print(f"{INPUTS[c][0]:36s} {share[:, c].mean():7.4f} +- {share[:, c].std():.4f}"
              f"   true {share_true[c]:.4f}")


if __name__ == "__main__":
    main()
