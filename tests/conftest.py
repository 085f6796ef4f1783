"""Shared fixtures of the accuracy suite: the independent numpy/scipy reference
(atlas_jax/bench/reference.py), plain-numpy closed forms of every law, and
synthetic run tables.

Nothing in the closed forms below imports atlas_jax: they restate the formulas of
/work/shared/ATLAS.md sections 1-2 (and the papers) in the most literal numpy, so
that the package's log-space, vmapped, jit-compiled implementations are checked
against an independent re-derivation.
"""

from __future__ import annotations

import os

# The scipy references run single-threaded: OpenBLAS's thread pool beside JAX's made scipy's L-BFGS-B 4-10x
# slower on a 2-core machine (180 s against 17 s for Epoch's grid subset). Set before numpy is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import contextlib  # noqa: E402
import re  # noqa: E402
import warnings  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from atlas_jax.bench import reference as scipy_reference  # noqa: E402


# --------------------------------------------------------------------------- expected warnings


@contextlib.contextmanager
def expect_warnings(*patterns: str, optional: tuple[str, ...] = ()):
    """The warnings a block is expected to give (pyproject turns any other into an error): each regex of
    ``patterns`` must match (``re.search``) at least one of them, and every warning given must match one of
    ``patterns`` or ``optional`` (warnings that may come, e.g. a sampler's diagnostics, which vary by platform)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    messages = [str(w.message) for w in caught]
    unexpected = [m for m in messages if not any(re.search(p, m) for p in patterns + tuple(optional))]
    missing = [p for p in patterns if not any(re.search(p, m) for m in messages)]
    assert not unexpected and not missing, f"unexpected warnings {unexpected}; expected but not given {missing}"


# --------------------------------------------------------------------------- closed forms


def np_chinchilla(N, D, E, A, B, alpha, beta):
    """L = E + A/N^alpha + B/D^beta."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    return E + A / N**alpha + B / D**beta


def np_dcsl(N, D, U, E, A, B, alpha, beta, R_D_star, R_N_star, return_branch=False):
    """Muennighoff et al. (2023), written in linear space as ATLAS.md section 1, with U the unique tokens a run
    sees, min(U available, D) (ATLAS.md's D' = U for D < U would credit tokens never seen)."""
    N, D, U = (np.asarray(v, float) for v in (N, D, U))
    U = np.minimum(U, D)
    R_D = np.maximum(D / U - 1.0, 0.0)
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    C = 6.0 * (G * U) ** ((alpha + beta) / alpha)          # compute for which U tokens are optimal
    N_opt = G * (C / 6.0) ** (beta / (alpha + beta))
    U_N = np.minimum(N, N_opt)
    R_N = np.maximum(N / U_N - 1.0, 0.0)
    D_eff = U + U * R_D_star * (1.0 - np.exp(-R_D / R_D_star))
    N_eff = U_N + U_N * R_N_star * (1.0 - np.exp(-R_N / R_N_star))
    L = E + A / N_eff**alpha + B / D_eff**beta
    return (L, N > N_opt) if return_branch else L


def np_msl(N, D, p, E, A, B, alpha, beta, gamma):
    """He et al. (2024): (E + A/N^alpha + B/D^beta) p^-gamma."""
    return np_chinchilla(N, D, E, A, B, alpha, beta) * np.asarray(p, float) ** (-gamma)


def np_saturating(D, U, lam):
    """S(D; U) = D if D <= U else U [1 + (1 - exp(-lambda (D/U - 1))) / lambda]."""
    D, U = np.broadcast_arrays(np.asarray(D, float), np.asarray(U, float))
    out = D.copy()
    rep = D > U
    out[rep] = U[rep] * (1.0 + (1.0 - np.exp(-lam * (D[rep] / U[rep] - 1.0))) / lam)
    return out


def np_atlas(frame, target, helpers, params, variant):
    """ATLAS loss of every run of ``frame`` (mixture columns tokens_<l>, unique_<l>).

    ``params``: E A B alpha beta lambda, tau_<helper> for each helper, tau_other.
    D_other = D_total - D_t - sum D_i; U_other = sum of the unique tokens of the other languages.
    """
    langs = [c[len("tokens_"):] for c in frame.columns if c.startswith("tokens_")]
    lam = params["lambda"]
    uniq = lambda l: frame[f"unique_{l}"].to_numpy(float) if f"unique_{l}" in frame else np.full(len(frame), np.inf)
    d_t = frame[f"tokens_{target}"].to_numpy(float)
    d_eff = np_saturating(d_t, uniq(target), lam)
    used = d_t.copy()
    if variant == "transfer":
        for h in helpers:
            d_h = frame[f"tokens_{h}"].to_numpy(float)
            d_eff = d_eff + params[f"tau_{h}"] * np_saturating(d_h, uniq(h), lam)
            used = used + d_h
    if variant != "monolingual":
        rest = [l for l in langs if l != target and (variant != "transfer" or l not in helpers)]
        u_o = sum(uniq(l) for l in rest)
        d_o = frame["tokens"].to_numpy(float) - used
        d_eff = d_eff + params["tau_other"] * np_saturating(d_o, u_o, lam)
    N = frame["params"].to_numpy(float)
    return params["E"] + params["A"] / N ** params["alpha"] + params["B"] / d_eff ** params["beta"]


def huber(r, delta=1e-3):
    r = np.asarray(r, float)
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def rel_err(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.abs(a - b) / np.abs(b)


def to_internal(law, params: dict) -> np.ndarray:
    """Public ``{name: value}`` -> internal vector in the law's parameter order (names may be group-specific)."""
    return np.array([p.to_internal(params[p.name]) for p in law.params], float)


# --------------------------------------------------------------------------- synthetic tables

#: Hoffmann et al. (2022) rounded fit, the truth of the synthetic Chinchilla problems.
CHIN_TRUTH = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def chinchilla_frame(N, D, truth=CHIN_TRUTH, noise=0.0, seed=0) -> pd.DataFrame:
    """All (N, D) pairs of the two axes, loss from the closed form times lognormal(0, noise)."""
    NN, DD = (g.ravel() for g in np.meshgrid(np.asarray(N, float), np.asarray(D, float), indexing="ij"))
    L = np_chinchilla(NN, DD, **truth)
    if noise:
        L = L * np.exp(noise * np.random.default_rng(seed).standard_normal(L.shape))
    return pd.DataFrame({"params": NN, "tokens": DD, "loss": L})


def atlas_mixture_frame() -> pd.DataFrame:
    """Synthetic multilingual design: target 'xx' plus helpers aa, bb, cc, dd, ee.

    Mixtures (shares of the total tokens) are chosen so that aa is co-sampled with xx in
    the most mixtures, then bb, then cc; dd and ee appear less often (so K_xx = aa, bb, cc).
    Unique tokens are small enough that many runs repeat xx (up to ~60 epochs) and some
    repeat the helpers, so lambda is identifiable. 5 model sizes x 6 token counts x 6 mixtures.
    """
    mixtures = [
        dict(xx=1.0),
        dict(xx=0.5, aa=0.5),
        dict(xx=0.3, aa=0.4, bb=0.3),
        dict(xx=0.2, aa=0.2, bb=0.2, cc=0.2, dd=0.2),
        dict(xx=0.6, aa=0.1, bb=0.1, cc=0.1, ee=0.1),
        dict(xx=0.25, aa=0.15, bb=0.25, cc=0.15, dd=0.1, ee=0.1),
    ]
    unique = dict(xx=3e9, aa=2e10, bb=8e9, cc=4e10, dd=5e9, ee=1e10)
    sizes = [2e7, 6e7, 2e8, 6e8, 2e9]
    tokens = [5e8, 2e9, 8e9, 3e10, 8e10, 2e11]
    rows = []
    for m_id, mix in enumerate(mixtures):
        for n in sizes:
            for d in tokens:
                row = {"params": n, "tokens": d, "language": "xx", "mixture": m_id}
                for l in unique:
                    row[f"tokens_{l}"] = d * mix.get(l, 0.0)
                    row[f"unique_{l}"] = unique[l]
                rows.append(row)
    frame = pd.DataFrame(rows)
    # exact bookkeeping: the mixture must add up to tokens
    frame["tokens"] = frame[[f"tokens_{l}" for l in unique]].sum(axis=1)
    return frame


ATLAS_TRUTH = {"E": 1.7, "A": 300.0, "B": 900.0, "alpha": 0.32, "beta": 0.3, "lambda": 0.08,
               "tau_aa": 0.45, "tau_bb": 0.25, "tau_cc": -0.08, "tau_other": 0.12}


#: The slowest files (on the 2-core machine, empty compilation cache) run first and the ones that mostly reuse
#: compiled programs from the persistent cache (notebook kernels, jax.distributed subprocesses) last: pytest-xdist
#: hands out files (and classes) in collection order (--dist loadscope --no-loadscope-reorder). The notebooks took 147 s first
#: and 56 s last.
SLOWEST_FIRST = ("test_readme.py", "test_model.py", "test_sampler.py", "test_batch.py", "test_synthetic.py", "test_crossover.py",
                 "test_planner.py", "test_devices.py", "test_curse.py", "test_figures.py")
LAST = ("test_multihost.py", "test_notebooks.py")


def pytest_collection_modifyitems(items):
    rank = {name: k for k, name in enumerate(SLOWEST_FIRST)}
    rank.update({name: len(items) + k for k, name in enumerate(LAST)})
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOWEST_FIRST)))  # stable: order within a file kept


@pytest.fixture(scope="session")
def epoch_posterior():
    """NUTS on Epoch's 240 runs, 2 chains x 400 draws: the posterior tests' and the figure tests' (one
    computation per test worker; a second worker finds its programs in the persistent compilation cache)."""
    import warnings
    import atlas_jax as aj
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return aj.posterior("chinchilla", aj.load_chinchilla(), chains=2, draws=400, warmup=400, seed=0)


@pytest.fixture(scope="session")
def ref():
    """The independent numpy/scipy reference module (atlas_jax/bench/reference.py)."""
    return scipy_reference


@pytest.fixture(scope="session")
def npl():
    """Plain-numpy closed forms and synthetic-data helpers."""
    return SimpleNamespace(
        chinchilla=np_chinchilla, dcsl=np_dcsl, msl=np_msl, saturating=np_saturating, atlas=np_atlas,
        huber=huber, rel_err=rel_err, to_internal=to_internal, chinchilla_frame=chinchilla_frame,
        atlas_mixture_frame=atlas_mixture_frame, CHIN_TRUTH=dict(CHIN_TRUTH), ATLAS_TRUTH=dict(ATLAS_TRUTH),
    )
