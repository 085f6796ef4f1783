"""ATLAS adaptive-transfer scaling law, Longpre et al. 2026, arXiv:2510.22037 (ICLR 2026).

    L(N, D_eff) = E + A / N^alpha + B / D_eff^beta
    D_eff = S(D_t; U_t) + sum_{i in K_t} tau_i S(D_i; U_i) + tau_other S(D_other; U_other)
    S(D; U) = D                                       if D <= U
            = U [1 + (1 - exp(-lambda (D/U - 1))) / lambda]  otherwise

t is the run's ``language``; K_t are the ``n_transfer`` languages most often
co-sampled with t in the group's mixtures (ties broken by tokens); D_other is
the rest of the mixture and U_other the sum of the other languages' unique
tokens. One lambda is shared by every source (the paper's text). Variants:
``monolingual`` (target term only), ``other`` (target + tau_other) and
``transfer`` (the full law). A missing ``unique_<lang>`` means no repetition
(``S = D``). ``D_eff`` is floored at ``DEFF_FLOOR = 0.1`` of the target term S(D_t; U_t): the law
is linear in the transfer weights, and a negative tau_other fitted on Unimax-like mixtures would
otherwise drive D_eff to zero (and the loss to infinity) in mixtures of many more languages. The paper
does not say whether tau is constrained; this floor is our choice (interference removes at most 90 %
of the target's own effective data).
"""

from __future__ import annotations

import functools

import numpy as np

from ..runtime import lazy
from ..data.runs import mixture_languages
from .chinchilla import coarse_chinchilla_params
from .spec import Law, Param, lse

jnp = lazy("jax.numpy")  # imported when a law is first evaluated: laws are read without JAX

__all__ = ["ATLAS", "ATLAS_VARIANTS", "DEFF_FLOOR", "atlas_law", "atlas_law_name", "transfer_languages",
           "saturating_tokens"]

ATLAS_VARIANTS = ("monolingual", "other", "transfer")
DEFF_FLOOR = 0.1  # interference removes at most 90 % of the target's own effective data


def saturating_tokens(d, u, repeats, lam):
    """S(D; U) given precomputed repeats = max(D/U - 1, 0) (u must be finite where repeats > 0)."""
    return jnp.where(repeats > 0, u * (1.0 + -jnp.expm1(-lam * repeats) / lam), d)


def transfer_languages(frame, n_transfer: int) -> list[str]:
    """The ``n_transfer`` languages most often co-sampled with the group's target language."""
    target = _target(frame)
    counts = []
    for lang in mixture_languages(frame):
        if lang != target:
            tokens = frame[f"tokens_{lang}"].to_numpy(float)
            counts.append((-(tokens > 0).sum(), -tokens.sum(), lang))
    chosen = [lang for n, _, lang in sorted(counts) if n < 0][:n_transfer]
    if len(chosen) < n_transfer:
        raise ValueError(f"language {target!r}: only {len(chosen)} language(s) are co-sampled with it in the "
                         f"mixture columns tokens_<lang>; the transfer variant needs {n_transfer}")
    return chosen


def _target(frame) -> str:
    if "language" not in frame:
        raise ValueError("law 'atlas' needs a 'language' column (the language each loss is measured on)")
    langs = frame["language"].astype(str).unique()
    if len(langs) != 1:
        raise ValueError(f"law 'atlas' fits one target language per group, got {sorted(langs)}: use --group-by language")
    return langs[0]


def _source(frame, langs) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and unique tokens (inf where unknown) summed over ``langs``."""
    d = sum((frame[f"tokens_{l}"].to_numpy(float) for l in langs), np.zeros(len(frame)))
    u = np.zeros(len(frame))
    for l in langs:
        col = f"unique_{l}"
        u = u + (frame[col].to_numpy(float) if col in frame else np.inf)
    return d, u


def _term(prefix, d, u) -> dict[str, np.ndarray]:
    u = np.where(u > 0, u, np.inf)
    repeats = np.maximum(np.divide(d, u, out=np.zeros_like(d), where=np.isfinite(u)) - 1.0, 0.0)
    return {f"{prefix}_d": d, f"{prefix}_u": np.where(repeats > 0, u, 1.0), f"{prefix}_r": repeats}


def atlas_law_name(variant: str) -> str:
    """The registered name of an ATLAS variant's law: ``atlas`` (transfer), ``atlas_monolingual``, ``atlas_other``."""
    if variant not in ATLAS_VARIANTS:
        raise ValueError(f"unknown ATLAS variant {variant!r}; choose one of {ATLAS_VARIANTS}")
    return "atlas" if variant == "transfer" else f"atlas_{variant}"


def atlas_law(variant: str = "transfer", n_transfer: int = 3) -> Law:
    """An ATLAS law; parameters ``E A B alpha beta lambda [tau_<lang> ...] [tau_other]``.

    Memoised: the same arguments give the same :class:`Law`, so its compiled programs are reused."""
    if variant not in ATLAS_VARIANTS:
        raise ValueError(f"unknown ATLAS variant {variant!r}; choose one of {ATLAS_VARIANTS}")
    if int(n_transfer) != n_transfer or n_transfer < 1:
        raise ValueError(f"n_transfer: expected a positive integer, got {n_transfer!r}")
    return _atlas_law(variant, int(n_transfer) if variant == "transfer" else 0)


@functools.lru_cache(maxsize=None)
def _atlas_law(variant: str, k: int) -> Law:
    with_other = variant != "monolingual"

    def features(frame, helpers=None):
        """Feature arrays; ``helpers`` overrides the co-sampled transfer languages (e.g. to predict new runs)."""
        target = _target(frame)
        mixture = mixture_languages(frame)
        if f"tokens_{target}" in frame:
            d_t, u_t = _source(frame, [target])
        else:
            if with_other:
                raise ValueError(f"ATLAS variant {variant!r} needs mixture columns tokens_<lang> "
                                 f"(no column 'tokens_{target}')")
            d_t = frame["tokens"].to_numpy(float)
            u_t = frame["unique_tokens"].to_numpy(float) if "unique_tokens" in frame else np.full(len(frame), np.inf)
        x = {"log_n": np.log(frame["params"].to_numpy(float)), **_term("t", d_t, u_t)}
        if helpers is None:
            helpers = transfer_languages(frame, k) if k else []
        elif len(helpers) != k:
            raise ValueError(f"ATLAS variant {variant!r} takes {k} transfer language(s), got {list(helpers)}")
        for j, lang in enumerate(helpers):
            x.update(_term(f"h{j}", *_source(frame, [lang])))
        if with_other:
            rest = [l for l in mixture if l != target and l not in helpers]
            d_o, u_o = _source(frame, rest)
            x.update(_term("o", frame["tokens"].to_numpy(float) - d_t - sum(x[f"h{j}_d"] for j in range(k)), u_o))
        return x

    def log_loss(theta, x):
        e, a, b, alpha, beta, lam = (theta[i] for i in range(6))
        lam = jnp.exp(lam)
        s_t = saturating_tokens(x["t_d"], x["t_u"], x["t_r"], lam)
        d_eff = s_t
        for j in range(k):
            d_eff = d_eff + theta[6 + j] * saturating_tokens(x[f"h{j}_d"], x[f"h{j}_u"], x[f"h{j}_r"], lam)
        if with_other:
            d_eff = d_eff + theta[6 + k] * saturating_tokens(x["o_d"], x["o_u"], x["o_r"], lam)
        log_d = jnp.log(jnp.maximum(d_eff, DEFF_FLOOR * s_t))
        return lse(e, a - alpha * x["log_n"], b - beta * log_d)

    log_loss.program_key = f"{__name__}.atlas_law({variant!r}, {k})"  # its programs are stored (atlas_jax.programs)

    taus = tuple(Param(f"tau_{j + 1}", f"tau_{j + 1}", grid=(0.0,), prior=(0.0, 0.5)) for j in range(k))
    if with_other:
        taus += (Param("tau_other", "tau_other", grid=(0.0,), prior=(0.0, 0.5)),)

    def group_names(frame):
        helpers = transfer_languages(frame, k) if k else []
        return ("E", "A", "B", "alpha", "beta", "lambda") + tuple(f"tau_{l}" for l in helpers) + \
            (("tau_other",) if with_other else ())

    return Law(
        name=atlas_law_name(variant),
        params=coarse_chinchilla_params() + (
            Param("lambda", "log_lambda", log=True, grid=tuple(np.log([0.05, 0.5])),
                  bounds=(np.log(1e-4), np.log(1e3)), prior=(np.log(0.1), 2.0)),) + taus,
        log_loss=log_loss,
        features=features,
        required=("params", "tokens", "loss", "language"),
        description=f"ATLAS adaptive-transfer law, {variant} variant (Longpre et al. 2026)",
        group_names=group_names,
    )


ATLAS = atlas_law()
