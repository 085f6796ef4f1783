"""Fits with parameters shared across groups: Levenberg-Marquardt on a block-arrow system.

Real multilingual tables hold 2-4 runs per language: too few for a language's own five Chinchilla
parameters, enough for its own E, A, B once the exponents are shared. With shared free parameters s (k of
them) and each group's own u_g (m each), ``fit(..., share=["alpha", "beta"])`` minimises

    sum_g sum_i w_gi Huber_delta(log L_hat(s, u_g; x_gi) - log L_gi)

jointly. Its Gauss-Newton matrix is block-arrow (a shared border, one diagonal block per group), so each
Marquardt-damped step is solved by the Schur complement on s (as in bundle adjustment, Triggs et al. 2000):

    A_g = H_gg + mu D_g,    S = H_ss + mu D_s - sum_g H_sg A_g^-1 H_gs
    x_s = S^-1 (-g_s + sum_g H_sg A_g^-1 g_g),    x_g = A_g^-1 (-g_g - H_gs x_s)

at O(G (m^3 + k m^2) + k^3) per step instead of O((k + G m)^3). The step rule, damping, bounds and status
codes are those of :mod:`atlas_jax.engine.solver`; starts, bootstrap resamples (drawn within each group)
and multi-start problems are vmapped. Float64 on the default device.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..linalg import cho_solve, cholesky
from ..programs import stored_jit
from .robust import huber, huber_psi
from .solver import Config, Solution, Status

__all__ = ["SharedLayout", "solve_shared", "joint_hessian", "fit_shared"]


class SharedLayout(NamedTuple):
    """Where the shared (``s``) and own (``u``) parameters sit in the free vector of the constraints."""

    shared: np.ndarray   # (k,) positions in the free vector
    own: np.ndarray      # (m,)

    @classmethod
    def build(cls, free_names: tuple[str, ...], share) -> "SharedLayout":
        unknown = [n for n in share if n not in free_names]
        if unknown:
            raise ValueError(f"share: {unknown} are not free parameters; free: {', '.join(free_names)}")
        shared = np.array([free_names.index(n) for n in dict.fromkeys(share)], int)
        return cls(shared, np.array([j for j in range(len(free_names)) if j not in shared], int))

    def merge(self, s, u):
        """Free vector(s) [..., q] from s [..., k] and u [..., m]."""
        s, u = np.asarray(s), np.asarray(u)
        out = np.zeros(np.broadcast_shapes(s.shape[:-1], u.shape[:-1]) + (len(self.shared) + len(self.own),))
        out[..., self.shared], out[..., self.own] = s, u
        return out


class _State(NamedTuple):
    s: jnp.ndarray       # (k,)
    u: jnp.ndarray       # (G, m)
    f: jnp.ndarray
    g_s: jnp.ndarray     # (k,)
    g_u: jnp.ndarray     # (G, m)
    h_ss: jnp.ndarray    # (k, k)
    h_su: jnp.ndarray    # (G, k, m)
    h_uu: jnp.ndarray    # (G, m, m)
    mu: jnp.ndarray
    nu: jnp.ndarray
    step: jnp.ndarray
    done: jnp.ndarray


def _blocks(residual, weights, s, u, cfg):
    """f, gradient and Gauss-Newton blocks at (s, u); ``residual(s, u_g, g)`` gives group g's residuals (n,)."""
    k = s.shape[0]

    def one(u_g, g, w):
        p = jnp.concatenate([s, u_g])
        r, jac = jax.vmap(lambda t: jax.jvp(lambda q: residual(q[:k], q[k:], g), (p,), (t,)), out_axes=(None, 0))(
            jnp.eye(p.shape[0], dtype=p.dtype))
        a = jnp.abs(r)
        curvature = jnp.where(a <= cfg.delta, 1.0, cfg.outlier_curvature * cfg.delta / jnp.maximum(a, cfg.delta))
        return jnp.sum(w * huber(r, cfg.delta)), jac @ (w * huber_psi(r, cfg.delta)), (jac * (w * curvature)) @ jac.T

    f, grad, hess = jax.vmap(one)(u, jnp.arange(u.shape[0]), weights)
    return f.sum(), grad[:, :k].sum(0), grad[:, k:], hess[:, :k, :k].sum(0), hess[:, :k, k:], hess[:, k:, k:]


def _held(x, g, lower, upper):
    return ((x <= lower) & (g > 0)) | ((x >= upper) & (g < 0))


def _step(residual, weights, st: _State, cfg_s: Config, cfg_u: Config) -> _State:
    """One damped Gauss-Newton trial on the block-arrow system (Schur complement on the shared block)."""
    held_s, held_u = _held(st.s, st.g_s, cfg_s.lower, cfg_s.upper), _held(st.u, st.g_u, cfg_u.lower, cfg_u.upper)
    fs, fu = ~held_s, ~held_u
    g_s, g_u = jnp.where(fs, st.g_s, 0.0), jnp.where(fu, st.g_u, 0.0)
    h_ss = jnp.where(fs[:, None] & fs[None, :], st.h_ss, jnp.diag(held_s.astype(st.h_ss.dtype)))
    h_su = jnp.where(fs[None, :, None] & fu[:, None, :], st.h_su, 0.0)
    eye_u = jax.vmap(jnp.diag)(held_u.astype(st.h_uu.dtype))
    h_uu = jnp.where(fu[:, :, None] & fu[:, None, :], st.h_uu, eye_u)
    d_s, d_u = jnp.diag(h_ss), jnp.diagonal(h_uu, axis1=1, axis2=2)
    top = jnp.maximum(jnp.max(d_s, initial=0.0), jnp.max(d_u, initial=0.0))
    scale_s, scale_u = (jnp.maximum(d, 1e-12 * top + 1e-300) for d in (d_s, d_u))
    low_u = cholesky(h_uu + st.mu * jax.vmap(jnp.diag)(scale_u))                    # (G, m, m)
    a_inv_us = cho_solve(low_u[:, None], h_su)                                     # (G, k, m): A^-1 H_us[:, j]
    a_inv_g = cho_solve(low_u, g_u)                                                 # (G, m)
    schur = h_ss + st.mu * jnp.diag(scale_s) - jnp.einsum("gkm,gjm->kj", h_su, a_inv_us)
    x_s = cho_solve(cholesky(schur), -g_s + jnp.einsum("gkm,gm->k", h_su, a_inv_g))
    x_u = -a_inv_g - jnp.einsum("gkm,k->gm", a_inv_us, x_s)
    s1, u1 = jnp.clip(st.s + x_s, cfg_s.lower, cfg_s.upper), jnp.clip(st.u + x_u, cfg_u.lower, cfg_u.upper)
    ds, du = s1 - st.s, u1 - st.u
    f1, *blocks = _blocks(residual, weights, s1, u1, cfg_s)
    quad = ds @ st.h_ss @ ds + 2 * jnp.einsum("k,gkm,gm->", ds, st.h_su, du) + jnp.einsum("gm,gmn,gn->", du, st.h_uu, du)
    predicted = -(st.g_s @ ds + jnp.sum(st.g_u * du)) - 0.5 * quad
    gain = (st.f - f1) / jnp.where(predicted > 0, predicted, jnp.inf)
    accept = jnp.isfinite(f1) & (f1 < st.f)
    small_f = accept & (st.f - f1 <= cfg_s.ftol * st.f)
    small_x = jnp.all(jnp.abs(ds) <= cfg_s.xtol * (jnp.abs(st.s) + cfg_s.xtol)) & \
        jnp.all(jnp.abs(du) <= cfg_s.xtol * (jnp.abs(st.u) + cfg_s.xtol))
    mu = jnp.where(accept, st.mu * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * gain - 1.0) ** 3), st.mu * st.nu)
    keep = lambda new, old: jnp.where(accept, new, old)
    return _State(keep(s1, st.s), keep(u1, st.u), keep(f1, st.f), *(keep(n, o) for n, o in zip(blocks, st[3:8])),
                  jnp.clip(mu, 1e-15, 1e15), jnp.minimum(jnp.where(accept, 2.0, 2.0 * st.nu), 1e6), st.step + 1,
                  small_f | small_x | (st.mu >= 1e15))


@partial(stored_jit, static_argnames=("log_loss",))
def solve_shared(log_loss, features, log_y, weights, s0, u0, layout_s, layout_u, basis, offset, lower, upper, delta,
                 max_steps):
    """Solve R joint problems: weights [R, G, n] on every group's ``features``/``log_y`` [G, n], starts s0 [R, k]
    and u0 [R, G, m]. Returns a :class:`~atlas_jax.engine.solver.Solution` with leading axis R whose ``params``
    are ``[s, u.ravel()]``."""
    cfg_s = Config(lower[layout_s], upper[layout_s], delta=delta, max_steps=max_steps)
    cfg_u = Config(lower[layout_u], upper[layout_u], delta=delta, max_steps=max_steps)
    q = basis.shape[1]

    def residual(s, u_g, g):
        phi = jnp.zeros(q, s.dtype).at[layout_s].set(s).at[layout_u].set(u_g)
        theta = offset + basis @ phi
        x = jax.tree.map(lambda a: a[g], features)
        return jax.vmap(lambda xi: log_loss(theta, xi))(x) - log_y[g]

    def one(w, s, u):
        s, u = jnp.clip(s, cfg_s.lower, cfg_s.upper), jnp.clip(u, cfg_u.lower, cfg_u.upper)
        f, *blocks = _blocks(residual, w, s, u, cfg_s)
        st = _State(s, u, f, *blocks, jnp.asarray(cfg_s.mu0, s.dtype), jnp.asarray(2.0, s.dtype), jnp.asarray(0),
                    ~jnp.isfinite(f))
        st = jax.lax.while_loop(lambda t: (~t.done) & (t.step < max_steps),
                                lambda t: _step(residual, w, t, cfg_s, cfg_u), st)
        inside = jnp.all((st.s > cfg_s.lower) & (st.s < cfg_s.upper)) & jnp.all((st.u > cfg_u.lower) & (st.u < cfg_u.upper))
        status = jnp.where(~jnp.isfinite(st.f), Status.NONFINITE,
                           jnp.where(~st.done, Status.MAX_STEPS, jnp.where(inside, Status.CONVERGED, Status.AT_BOUND)))
        free_s = (st.s > cfg_s.lower) & (st.s < cfg_s.upper)
        free_u = (st.u > cfg_u.lower) & (st.u < cfg_u.upper)
        grad_norm = jnp.maximum(jnp.max(jnp.abs(jnp.where(free_s, st.g_s, 0.0)), initial=0.0),
                                jnp.max(jnp.abs(jnp.where(free_u, st.g_u, 0.0)), initial=0.0))
        return Solution(jnp.concatenate([st.s, st.u.ravel()]), st.f, status, st.step, grad_norm)

    return jax.vmap(one)(weights, s0, u0)


@partial(stored_jit, static_argnames=("log_loss",))
def joint_hessian(log_loss, features, log_y, weights, s, u, layout_s, layout_u, basis, offset):
    """Per-group Jacobians [G, n, k + m] (columns: shared, then own) and the dense Gauss-Newton matrix of the joint
    problem [k + G m, k + G m] (order: shared, then group 0's own, group 1's, ...) at (s, u)."""
    q = basis.shape[1]
    k, (G, m) = s.shape[0], u.shape

    def jac_g(u_g, x, y):
        def res(p):
            phi = jnp.zeros(q, p.dtype).at[layout_s].set(p[:k]).at[layout_u].set(p[k:])
            return jax.vmap(lambda xi: log_loss(offset + basis @ phi, xi))(x) - y
        return jax.jacfwd(res)(jnp.concatenate([s, u_g]))

    jac = jax.vmap(jac_g)(u, features, log_y)                                    # (G, n, k + m)
    h = jnp.einsum("gni,gn,gnj->gij", jac, weights, jac)
    full = jnp.zeros((k + G * m, k + G * m), s.dtype).at[:k, :k].set(h[:, :k, :k].sum(0))
    rows = k + m * jnp.arange(G)[:, None] + jnp.arange(m)[None, :]               # (G, m)
    full = full.at[rows[:, :, None], rows[:, None, :]].set(h[:, k:, k:])
    full = full.at[jnp.arange(k)[None, :, None], rows[:, None, :]].set(h[:, :k, k:])
    full = full.at[rows[:, :, None], jnp.arange(k)[None, None, :]].set(jnp.swapaxes(h[:, :k, k:], 1, 2))
    return jac, full


def fit_shared(law, cons, data, share, *, delta, grid, bootstrap, unit, seed, screen_steps, keep, max_steps,
               indices=None):
    """Multi-start joint fit of every group of ``data`` (:class:`~atlas_jax.engine.batch.GroupedData`) with the
    free parameters ``share`` shared, and bootstrap refits from the estimate with resamples drawn within each group.

    Every start of ``grid`` (internal, [S, P]) starts all groups alike; each is screened for ``screen_steps``
    steps and the ``keep`` best are polished. Returns ``(best, boot, flags, condition)``: :class:`Solution`s with
    free parameters per group (``best.params`` [G, q]; ``boot.params`` [G, B, q] or ``boot`` None), the groups'
    identification flags and the joint Hessian's condition number (per group).
    """
    from .batch import _bootstrap_weights

    lay = SharedLayout.build(cons.free_names, share)
    G, k, m = len(data.groups), len(lay.shared), len(lay.own)
    args = (law.log_loss, {name: jnp.asarray(v) for name, v in data.features.items()}, jnp.asarray(data.log_y))
    consts = (jnp.asarray(lay.shared), jnp.asarray(lay.own), jnp.asarray(cons.basis), jnp.asarray(cons.offset))
    box = (jnp.asarray(cons.lower), jnp.asarray(cons.upper), delta)

    def solve(w, s0, u0, steps, chunk=256):
        parts = [solve_shared(*args, jnp.asarray(w[i:i + chunk]), jnp.asarray(s0[i:i + chunk]),
                              jnp.asarray(u0[i:i + chunk]), *consts, *box, steps) for i in range(0, len(s0), chunk)]
        sol = jax.tree.map(lambda *a: np.concatenate([np.asarray(x) for x in a]), *parts)
        return sol, sol.params[:, :k], sol.params[:, k:].reshape(-1, G, m)

    phi = np.unique(np.clip(cons.project(grid), cons.lower, cons.upper), axis=0)
    s0, u0 = phi[:, lay.shared], np.repeat(phi[:, None, lay.own], G, axis=1)
    w = np.broadcast_to(data.mask, (len(phi),) + data.mask.shape)
    if len(phi) > keep:
        screen, s_scr, u_scr = solve(w, s0, u0, screen_steps)
        chosen = np.argsort(np.where(np.isfinite(screen.objective), screen.objective, np.inf), kind="stable")[:keep]
        s0, u0, w = s_scr[chosen], u_scr[chosen], w[:keep]
    sol, s_all, u_all = solve(w, s0, u0, max_steps)
    b = int(np.argmin(np.where(np.isfinite(sol.objective), sol.objective, np.inf)))
    s, u = s_all[b], u_all[b]
    per_group = lambda a: np.repeat(np.asarray(a)[None], G, axis=0)
    best = Solution(lay.merge(np.broadcast_to(s, (G, k)), u), *(per_group(x[b]) for x in sol[1:]))

    jac, full = joint_hessian(*args, jnp.asarray(data.mask), jnp.asarray(s), jnp.asarray(u), *consts)
    jac, full = np.asarray(jac), np.asarray(full)
    flags, condition = _flags(jac, full, data, s, u, lay, cons, int(sol.status[b]))

    boot = None
    if bootstrap or indices is not None:
        counts = np.swapaxes(_bootstrap_weights(data, bootstrap, seed, indices, unit), 0, 1)  # [B, G, n]
        B = counts.shape[0]
        refit, sb, ub = solve(counts, np.repeat(s[None], B, 0), np.repeat(u[None], B, 0), max_steps)
        params = np.swapaxes(lay.merge(sb[:, None, :], ub), 0, 1)                             # [G, B, q]
        boot = Solution(params, *(per_group(x) for x in refit[1:]))
    return best, boot, flags, np.full(G, condition)


def _flags(jac, full, data, s, u, lay, cons, status):
    """Per-group flags of a joint fit and the joint Hessian's condition number: each group's own parameters judged
    on its runs, the shared ones on all runs (collapsed, at a bound), residual degrees of freedom per group (own
    parameters) and overall, and the joint Hessian's conditioning (the groups and parameters of its flattest
    direction)."""
    from .identify import COLLAPSE_SENSITIVITY, MAX_CONDITION, point_flags

    G, k, m = len(data.groups), len(lay.shared), len(lay.own)
    names_s = [cons.free_names[j] for j in lay.shared]
    names_u = [cons.free_names[j] for j in lay.own]
    lower_s, upper_s = cons.lower[lay.shared], cons.upper[lay.shared]
    flags = []
    live = data.mask > 0
    sens_shared = np.max(np.abs(np.concatenate([jac[g][live[g], :k] for g in range(G)])), axis=0, initial=0.0)
    for g in range(G):
        own_flags, _ = point_flags(jac[g][None, :, k:], np.eye(m)[None], data.mask[g][None], u[g][None],
                                   cons.lower[lay.own], cons.upper[lay.own], np.array([status]), tuple(names_u))
        f = own_flags[0]  # conditioning is judged on the joint Hessian below
        shared_bound = [n for j, n in enumerate(names_s) if not lower_s[j] < s[j] < upper_s[j]]
        shared_gone = [n for j, n in enumerate(names_s) if not sens_shared[j] >= COLLAPSE_SENSITIVITY]
        for flag, extra in (("at_bound", shared_bound), ("collapsed", shared_gone)):
            if extra:
                f[flag] = tuple(extra) + f.get(flag, ())
        flags.append(f)
    if live.sum() - (k + G * m) < 1:
        for f in flags:
            f["no_dof"] = ()
    values, vectors = np.linalg.eigh(full) if np.all(np.isfinite(full)) else (np.zeros(1), np.ones((len(full), 1)))
    condition = values[-1] / values[0] if values[0] > 0 else np.inf
    if condition > MAX_CONDITION:
        flat = np.abs(vectors[:, 0]) >= 0.3 * np.max(np.abs(vectors[:, 0]))
        shared = [n for j, n in enumerate(names_s) if flat[j]]
        for g in range(G):
            own = [n for j, n in enumerate(names_u) if flat[k + g * m + j]]
            if shared or own:
                flags[g]["ill_conditioned"] = tuple(shared + own)
    return flags, float(condition)
