"""Held-out evaluation of fitted laws under the ATLAS paper's five protocols (Longpre et al. 2026, Table 1).

``r_squared`` is on the loss itself, ``1 - sum (L - L_hat)^2 / sum (L - mean L)^2``
(as in Muennighoff et al.'s published R^2 = 0.7722).

Protocols (each returns a boolean *held-out* mask over the runs):
- ``random``: a random 20 % of runs;
- ``max_tokens``: the 20 % of runs with the most tokens D;
- ``model_sizes``: runs of the held-out model sizes (given as ``sizes``/``holdout_sizes``; default: the sizes
  nearest to 660M and 8B parameters, the paper's);
- ``max_compute``: the 20 % of runs with the largest compute C = 6 N D;
- ``mixtures``: runs whose mixture is not monolingual, bilingual or the largest (Unimax-like) mixture,
  i.e. 3 <= K < max K languages with tokens > 0.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm import tqdm

from ..data.runs import RunTable, mixture_columns, validate_runs
from ..laws import get_law
from ..laws.spec import Law
from ..programs import stored_jit
from .batch import bucket, fit, pad_to

__all__ = ["PROTOCOLS", "r_squared", "predict", "log_losses", "holdout_mask", "evaluate_holdout", "compare_laws"]

PROTOCOLS = ("random", "max_tokens", "model_sizes", "max_compute", "mixtures")
PAPER_SIZES = (6.6e8, 8.45e9)  # held-out model sizes of the paper's protocol (660M and 8B parameters)


def r_squared(y, y_hat) -> float:
    y, y_hat = np.asarray(y, float), np.asarray(y_hat, float)
    return float(1.0 - np.sum((y - y_hat) ** 2) / np.sum((y - y.mean()) ** 2))


def predict(law: Law | str, frame: pd.DataFrame, params: dict[str, float | np.ndarray]) -> np.ndarray:
    """Predicted loss of every run in ``frame`` (one group) at public ``params``: [runs]; or, when the values
    of ``params`` are arrays of K draws, at every draw: [K, runs].

    For a law whose names depend on the group (ATLAS), ``params`` are one fitted group's: its
    ``tau_<lang>`` name the group's helper languages, and ``frame``'s runs (e.g. planned mixtures
    outside the fitted table) are read with those helpers; a helper without a ``tokens_<lang>``
    column has no tokens.
    """
    law = get_law(law) if isinstance(law, str) else law
    if law.group_names is None:
        names, features = law.names, law.features(frame)
    else:  # the group's tau_<lang> take the places of the law's tau_1, tau_2, ...
        own = [n for n in params if n.startswith("tau_") and n not in law.names]
        slots = [n for n in law.names if n.startswith("tau_") and n not in params]
        if len(own) != len(slots):
            raise ValueError(f"law {law.name!r}: params {list(params)} name {len(own)} transfer language(s) "
                             f"(tau_<lang>) for the {len(slots)} of {list(law.names)}")
        helpers = [n.removeprefix("tau_") for n in own]
        frame = frame.assign(**{f"tokens_{h}": 0.0 for h in helpers if f"tokens_{h}" not in frame})
        names = tuple(own[slots.index(n)] if n in slots else n for n in law.names)
        features = law.features(frame, helpers=helpers)
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"law {law.name!r}: params lack {missing}; expected {list(names)}")
    values = np.broadcast_arrays(*(np.asarray(params[name], float) for name in names))
    theta = np.stack([p.to_internal(v) for p, v in zip(law.params, values)], axis=-1)
    return np.exp(log_losses(law, np.atleast_2d(theta), features).reshape(theta.shape[:-1] + (-1,)))


def log_losses(law: Law, theta: np.ndarray, features: dict[str, np.ndarray]) -> np.ndarray:
    """``law``'s log loss at every run (``features``, arrays [n]) for every internal parameter vector of
    ``theta`` [K, q]: an array [K, n]. One compiled program per law and bucket of (K, n) (:func:`bucket`)."""
    theta = np.asarray(theta, float)
    (K, _), n = theta.shape, len(next(iter(features.values())))
    out = _log_losses(law.log_loss, jnp.asarray(pad_to(theta, (bucket(K),))),
                      {k: jnp.asarray(pad_to(np.asarray(v, float), (bucket(n),))) for k, v in features.items()})
    return np.asarray(out)[:K, :n]


@partial(stored_jit, static_argnames=("log_loss",))
def _log_losses(log_loss, theta, x):
    return jax.vmap(lambda th: jax.vmap(lambda xi: log_loss(th, xi))(x))(theta)


def _top_fraction(values: np.ndarray, fraction: float) -> np.ndarray:
    k = max(1, int(round(fraction * len(values))))
    mask = np.zeros(len(values), bool)
    mask[np.argsort(values, kind="stable")[-k:]] = True
    return mask


def _held_sizes(n: np.ndarray, sizes: Sequence[float] | None) -> np.ndarray:
    """The model sizes among ``n`` that ``model_sizes`` holds out (see :func:`holdout_mask`)."""
    distinct = np.unique(n)
    if sizes is None:
        return np.unique([distinct[np.argmin(np.abs(np.log(distinct) - np.log(s)))] for s in PAPER_SIZES])
    held = [distinct[np.isclose(distinct, s, rtol=1e-9, atol=0.0)] for s in map(float, sizes)]
    missing = [s for s, hit in zip(sizes, held) if not hit.size]
    if missing:
        raise ValueError(f"column 'params': held-out model size(s) {missing} not in the table; expected sizes of "
                         f"its runs: {distinct.tolist()}")
    return np.concatenate([distinct[:0], *held])


def holdout_mask(frame: pd.DataFrame, protocol: str, *, fraction: float = 0.2, seed: int = 0,
                 sizes: Sequence[float] | None = None) -> np.ndarray:
    """Boolean mask of the held-out runs of ``frame`` under ``protocol``.

    ``model_sizes`` holds out the runs whose N is one of ``sizes`` (each a size of ``frame``'s runs, to relative
    1e-9), by default of the sizes nearest to 660M and 8B parameters (the paper's).
    """
    n, d = frame["params"].to_numpy(float), frame["tokens"].to_numpy(float)
    if protocol == "random":
        mask = np.zeros(len(frame), bool)
        mask[np.random.default_rng(seed).permutation(len(frame))[: max(1, int(round(fraction * len(frame))))]] = True
        return mask
    if protocol == "max_tokens":
        return _top_fraction(d, fraction)
    if protocol == "max_compute":
        return _top_fraction(6.0 * n * d, fraction)
    if protocol == "model_sizes":
        return np.isin(n, _held_sizes(n, sizes))
    if protocol == "mixtures":
        mix = mixture_columns(frame, "tokens")
        if not mix:
            raise ValueError("protocol 'mixtures' needs mixture columns tokens_<lang>")
        k = (frame[mix].to_numpy(float) > 0).sum(axis=1)
        return (k >= 3) & (k < k.max())
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")


def evaluate_holdout(law: Law | str, runs: RunTable | pd.DataFrame, protocols: Sequence[str] = PROTOCOLS, *,
                     group_by: str | None = None, seed: int = 0, holdout_sizes: Sequence[float] | None = None,
                     progress: bool = False, **fit_kwargs) -> pd.DataFrame:
    """Fit on the kept runs and score R^2 on the held-out runs, per protocol and group.

    Each protocol is one batched fit of every group, the held-out runs weighted 0 (one compilation
    serves all protocols). Returns ``protocol, group, n_train, n_test, r2``, with a row ``group = "all"``
    pooling the held-out runs of every group when there are several; protocols that leave a group
    without test runs or with fewer training runs than parameters give ``r2 = NaN`` for it.
    ``holdout_sizes``: the model sizes (N) that ``model_sizes`` holds out, each a size of the table's runs
    (``ValueError`` otherwise); by default each group's sizes nearest to 660M and 8B parameters.
    ``progress`` shows a bar over the protocols on stderr.
    """
    law = get_law(law) if isinstance(law, str) else law
    frame = (runs if isinstance(runs, RunTable) else validate_runs(runs, required=law.required,
                                                                   group_by=group_by)).frame
    held_sizes = None if holdout_sizes is None else _held_sizes(frame["params"].to_numpy(float), holdout_sizes)
    keys = [None] if group_by is None else list(dict.fromkeys(frame[group_by]))
    rows_of = {k: np.arange(len(frame)) if k is None else np.flatnonzero((frame[group_by] == k).to_numpy())
               for k in keys}
    out = []
    for protocol in tqdm(protocols, desc=f"{law.name}: held-out protocols", disable=not progress, leave=False,
                         file=sys.stderr):
        test = np.zeros(len(frame), bool)
        for k, rows in rows_of.items():
            test[rows] = holdout_mask(frame.iloc[rows].reset_index(drop=True), protocol, seed=seed,
                                      sizes=None if held_sizes is None else
                                      held_sizes[np.isin(held_sizes, frame["params"].to_numpy(float)[rows])])
        fittable = [k for k, rows in rows_of.items()
                    if test[rows].any() and (~test[rows]).sum() >= len(law.params)]
        keep = np.isin(np.arange(len(frame)), np.concatenate([rows_of[k] for k in fittable])) if fittable else test
        predicted = np.full(len(frame), np.nan)
        if fittable:
            sub = frame[keep].reset_index(drop=True)
            res = fit(law, sub, group_by=group_by, weights=(~test[keep]).astype(float), **fit_kwargs)
            for k in fittable:
                rows = rows_of[k]
                predicted[rows] = predict(law, frame.iloc[rows].reset_index(drop=True),
                                          res.params(None if k is None else str(k)))
        for k, rows in rows_of.items():
            held = rows[test[rows]]
            out.append({"protocol": protocol, "group": "all" if k is None else str(k),
                        "n_train": int((~test[rows]).sum()), "n_test": len(held),
                        "r2": r_squared(frame["loss"].to_numpy()[held], predicted[held]) if k in fittable else np.nan})
        if len(keys) > 1:
            held = np.flatnonzero(test & ~np.isnan(predicted))
            out.append({"protocol": protocol, "group": "all", "n_train": int((~test).sum()), "n_test": len(held),
                        "r2": r_squared(frame["loss"].to_numpy()[held], predicted[held]) if len(held) else np.nan})
    return pd.DataFrame(out)


def compare_laws(runs: RunTable | pd.DataFrame, laws: Sequence[str] = ("chinchilla", "msl", "atlas_monolingual",
                 "atlas_other", "atlas"), protocols: Sequence[str] = PROTOCOLS, *, group_by: str | None = "language",
                 seed: int = 0, holdout_sizes: Sequence[float] | None = None, progress: bool = False,
                 **fit_kwargs) -> pd.DataFrame:
    """Held-out R^2 of several laws under several protocols, pooled over groups: a table shaped like
    Table 1 of Longpre et al. (2026), one row per law and one column per protocol (``holdout_sizes``: as in
    :func:`evaluate_holdout`; ``progress``: a bar per law)."""
    rows = []
    for name in laws:
        scores = evaluate_holdout(name, runs, protocols, group_by=group_by, seed=seed, holdout_sizes=holdout_sizes,
                                  progress=progress, **fit_kwargs)
        pooled = scores[scores["group"] == "all"].drop_duplicates("protocol", keep="last")
        rows.append({"law": name, **dict(zip(pooled["protocol"], pooled["r2"]))})
    return pd.DataFrame(rows).set_index("law")[list(protocols)]
