"""Curse-of-multilinguality law, Longpre et al. 2026, arXiv:2510.22037, section 4.

    L(K, N, D_t) = L_inf + A K^phi / N^alpha + B K^psi / D_t^beta

for a model of N parameters trained on K languages, D_t of its tokens in the
target language t on which the loss is measured (D_total = K D_t for a uniform
mixture). ``phi`` > 0 is the capacity cost of each added language, ``psi`` the
change of the data term (< 0: the other languages help). Fitted in log space with
e = log L_inf, a = log A, b = log B:

    log L = LSE(e, a + phi log K - alpha log N, b + psi log K - beta log D_t).

Public parameters ``E A B alpha beta phi psi`` (``E`` is L_inf, the project's
Chinchilla naming). Published: phi = 0.11, psi = -0.04 (the rest unpublished).

:func:`joint_curse_law` fits several target languages at once: their own ``E A B alpha beta`` and one
shared ``phi`` and ``psi`` (the paper fits the curse jointly across languages).

Features: ``log N`` from ``params``; ``K`` from ``num_languages``; ``D_t`` from
``tokens_<language>`` (the run's target) when mixture columns exist, otherwise
``tokens / num_languages`` (uniform mixture). Default starts: the coarse
Chinchilla grid (450 points) x phi in {0, 0.1} x psi in {-0.05, 0.05} (1,800).
"""

from __future__ import annotations

import functools

import numpy as np

from ..runtime import lazy
from .chinchilla import coarse_chinchilla_params
from .spec import Law, Param, lse

jax, jnp = lazy("jax"), lazy("jax.numpy")

__all__ = ["CURSE", "curse_log_loss", "curse_features", "target_tokens", "joint_curse_law"]

_NAME = "curse"


def _column(frame, name: str, why: str) -> np.ndarray:
    if name not in frame:
        raise ValueError(f"law {_NAME!r} needs a {name!r} column ({why}); available columns: {list(frame.columns)}")
    return frame[name].to_numpy(float)


def target_tokens(frame) -> np.ndarray:
    """D_t of every run: ``tokens_<language>`` where mixture columns exist, else ``tokens / num_languages``."""
    k = _column(frame, "num_languages", "K, the number of training languages")
    mixture = [c for c in frame.columns if isinstance(c, str) and c.startswith("tokens_") and c != "tokens_"]
    if not mixture:
        return _column(frame, "tokens", "total tokens D_total") / k
    if "language" not in frame:
        raise ValueError(f"law {_NAME!r} needs a 'language' column (the language each loss is measured on) when "
                         f"mixture columns tokens_<lang> are given; available columns: {list(frame.columns)}")
    langs = frame["language"].astype(str).to_numpy()
    missing = sorted({f"tokens_{l}" for l in langs} - set(frame.columns))
    if missing:
        raise ValueError(f"law {_NAME!r}: mixture columns tokens_<lang> exist but column(s) {missing} of the runs' "
                         "target language(s) are missing")
    d_t = np.array([frame[f"tokens_{l}"].iloc[i] for i, l in enumerate(langs)], float)
    bad = np.flatnonzero(~(d_t > 0))
    if len(bad):
        raise ValueError(f"column 'tokens_<language>': runs {bad[:10].tolist()} put no tokens in the language "
                         "their loss is measured on; expected D_t > 0")
    return d_t


def curse_features(frame) -> dict[str, np.ndarray]:
    """``log_n``, ``log_k`` and ``log_dt`` of every run."""
    n = _column(frame, "params", "N, the model size")
    k = _column(frame, "num_languages", "K, the number of training languages")
    if np.any(~(k >= 1)):
        raise ValueError(f"column 'num_languages': rows {np.flatnonzero(~(k >= 1))[:10].tolist()} are not >= 1")
    return {"log_n": np.log(n), "log_k": np.log(k), "log_dt": np.log(target_tokens(frame))}


def curse_log_loss(theta, x):
    """log L for internal theta = (e, a, b, alpha, beta, phi, psi) at one run's features."""
    e, a, b, alpha, beta, phi, psi = (theta[i] for i in range(7))
    return lse(e, a + phi * x["log_k"] - alpha * x["log_n"], b + psi * x["log_k"] - beta * x["log_dt"])


CURSE = Law(
    name=_NAME,
    params=coarse_chinchilla_params() + (Param("phi", "phi", grid=(0.0, 0.1), prior=(0.0, 0.25)),
                                         Param("psi", "psi", grid=(-0.05, 0.05), prior=(0.0, 0.25))),
    log_loss=curse_log_loss,
    features=curse_features,
    required=("params", "tokens", "loss", "num_languages"),
    description="L = L_inf + A K^phi/N^alpha + B K^psi/D_t^beta (Longpre et al. 2026, curse of multilinguality)",
)


def joint_curse_law(languages) -> Law:
    """The curse law over several target languages: per-language ``E_l A_l B_l alpha_l beta_l``, shared ``phi psi``.

    A run's prediction is :func:`curse_log_loss` with its ``language``'s five parameters. Parameters are
    ordered language by language (in ``languages`` order), then ``phi``, ``psi``; no start grid (start
    from per-language fits, as :func:`atlas_jax.analysis.fit_curse_joint` does). Memoised: the same
    languages give the same :class:`Law`, so its compiled programs are reused.
    """
    languages = tuple(str(l) for l in languages)
    if len(set(languages)) != len(languages) or not languages:
        raise ValueError(f"joint_curse_law: expected distinct language names, got {list(languages)}")
    return _joint_curse_law(languages)


@functools.lru_cache(maxsize=None)
def _joint_curse_law(languages: tuple[str, ...]) -> Law:
    base = coarse_chinchilla_params()
    params = tuple(Param(f"{p.name}_{l}", f"{p.internal}_{l}", p.log, (p.grid[len(p.grid) // 2],), p.bounds, p.prior)
                   for l in languages for p in base) + CURSE.params[5:]
    index = {l: i for i, l in enumerate(languages)}

    def features(frame):
        if "language" not in frame:
            raise ValueError(f"law 'curse_joint' needs a 'language' column; available columns: {list(frame.columns)}")
        langs = frame["language"].astype(str)
        unknown = sorted(set(langs) - set(index))
        if unknown:
            raise ValueError(f"column 'language': {unknown} not among the law's languages {list(languages)}")
        return {**curse_features(frame), "lang": langs.map(index).to_numpy(float)}

    def log_loss(theta, x):
        own = jax.lax.dynamic_slice(theta, (5 * x["lang"].astype(int),), (5,))
        return curse_log_loss(jnp.concatenate([own, theta[-2:]]), x)

    log_loss.program_key = f"{__name__}.joint_curse_law({languages!r})"  # its programs are stored (atlas_jax.programs)

    return Law(name="curse_joint", params=params, log_loss=log_loss, features=features,
               required=CURSE.required + ("language",),
               description=f"curse law over {len(languages)} languages with shared phi, psi")
