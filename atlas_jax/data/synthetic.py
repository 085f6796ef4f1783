"""A synthetic multilingual training campaign shaped like the ATLAS experiments (Longpre et al. 2026, §6).

No public multilingual run table exists, so this generator draws one from a known ground truth. By default
(``phi = psi = 0``, the bundled ``atlas_jax/datasets/campaign/``) every pretraining run follows exactly the law that
``atlas_jax.laws.ATLAS`` (``--law atlas``, transfer variant, 3 helpers) fits, restated here in numpy:

    L = E_t + A_t K^phi / N^alpha_t + B_t K^psi / D_eff^beta_t                       (every pretraining run, target t)
    D_eff = max(S(D_t; U_t) + sum_{i in H_t} tau_{i->t} S(D_i; U_i) + tau_other,t S(D_other; U_other),
                DEFF_FLOOR S(D_t; U_t))
    S(D; U) = D if D <= U else U [1 + (1 - exp(-lambda (D/U - 1))) / lambda]

with K the number of languages in the mixture; ``phi``, ``psi`` != 0 (the paper's curse fit is 0.11,
-0.04) multiply in the curse factors of §4, which the ATLAS law does not have. H_t are the three sources
with the highest transfer score to t in the bundled 38x38 matrix, and the design makes them the three
languages most often co-sampled with t (the helpers the fitted law picks): each is in t's bilingual runs
and in t's capacity mixtures. tau = max(BTS, 0) / (2 - max(BTS, 0)) (the weight at which a 50/50 bilingual
run reproduces a score; see ``atlas_jax.analysis.transfer``; negative scores are clipped, so the floor
never binds: a negative weight would drive D_eff to the floor once a helper's tokens dwarf a saturated
low-resource target, where the weight is no longer identified); tau_other,t is 1/20 of the same map of
t's mean score over the other sources (its tokens come from up to 34 languages). D_other is the rest of
the mixture and U_other sums its languages' unique tokens. With ``transfer=False`` (all tau = 0) the
capacity runs follow the curse law of §4 exactly (for languages that never repeat data).

Finetuning continues a Unimax checkpoint of the same size N worth ``D0`` = 50B target tokens on t alone:
``L_ft(d) = E_t + c A_t / N^alpha_t + B_t / (d + D0)^beta_t`` against the scratch curve
``L(d) = E_t + A_t / N^alpha_t + B_t / d^beta_t``; ``c > 1`` (the checkpoint's spent capacity) is set per
language and size so that the curves cross at D*(N) = D*_2B (N / 2B)^(gamma - 1): the paper's 2B crossovers
(EN 144B ... ZH 283B tokens) and a crossover compute C* = 6 N D* = k_t N^gamma with gamma = 1.65.

Run types (``group`` column): ``monolingual`` (7 targets x 20 sizes), ``bilingual`` (target + one of its
helpers, 50/50 and 75/25, 10 sizes), ``unimax`` (20 sizes, evaluated on the targets with at least 0.1 % of
the mixture), ``capacity`` (uniform K-language mixtures of a target and its K - 1 highest-scoring sources,
K in {2, 4, 6, 8, 12, 16, 24, 32, 38}, 10 sizes, evaluated on that target; the 38-language mixtures are
one run per size evaluated on every target), and ``finetune`` / ``scratch`` loss curves for the 8
crossover languages at 5 sizes from 0.55B to 8.5B (20 checkpoints each, 1 to 500 tokens per parameter).
``hi`` of the paper is replaced by ``bn`` (hi is not in the transfer matrix). Losses carry multiplicative
log-normal noise (1 % across runs, 0.05 % along a loss curve by default).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..laws.atlas import DEFF_FLOOR

__all__ = ["MODEL_SIZES", "TARGETS", "CROSSOVER_TOKENS", "CROSSOVER_GAMMA", "CURVE_SIZES", "UNIQUE_TOKENS", "campaign",
           "crossover_truth", "write_campaign"]

MODEL_SIZES = (9_044_352, 17_662_848, 24_847_776, 66_588_672, 106_830_080, 146_155_520, 237_646_080,
               289_029_888, 368_068_608, 554_457_600, 661_807_872, 756_970_368, 852_132_864, 1_042_847_232,
               1_297_391_872, 1_608_560_640, 1_809_893_376, 2_034_422_912, 4_335_303_168, 8_452_190_208)
TARGETS = ("en", "fr", "ru", "zh", "bn", "sw", "yo")
CROSSOVER_TOKENS = {"en": 144e9, "ja": 145e9, "pt": 148e9, "de": 160e9, "ru": 189e9, "vi": 234e9, "es": 239e9,
                    "zh": 283e9}
# MADLAD-400 unique tokens where the paper prints them (hi's 7.9B used for bn); others by resource tier.
UNIQUE_TOKENS = {"en": 2.8e12, "ru": 705e9, "fr": 363e9, "zh": 125e9, "bn": 7.9e9, "sw": 770e6, "yo": 150e6,
                 "es": 400e9, "de": 400e9, "pt": 200e9, "ja": 150e9, "vi": 100e9, "it": 150e9, "id": 60e9,
                 "ko": 50e9, "tr": 60e9, "uk": 40e9, "ar": 50e9, "fa": 40e9, "sv": 30e9, "no": 20e9, "ro": 30e9,
                 "ca": 15e9, "el": 20e9, "he": 15e9, "hr": 10e9, "ms": 10e9, "th": 20e9, "fil": 5e9, "af": 2e9,
                 "kk": 3e9, "cy": 1.5e9, "ur": 4e9, "te": 3e9, "mr": 3e9, "gu": 2e9, "ps": 1e9, "ckb": 1e9}
_TOKENS_PER_PARAM = (5.0, 10.0, 20.0, 40.0, 80.0)
_D_MONO = 2_034_422_912  # the 2B model of the transfer and crossover experiments
_CAPACITY_K = (2, 4, 6, 8, 12, 16, 24, 32, 38)
#: Model sizes of the scratch/finetune curve pairs (the 2B of the paper, two sizes below and two above).
CURVE_SIZES = (MODEL_SIZES[9], MODEL_SIZES[13], _D_MONO, MODEL_SIZES[18], MODEL_SIZES[19])
#: Exponent of the true crossover compute C* = k_t N^gamma (the paper prints 1.65 twice and 1.54 once).
CROSSOVER_GAMMA = 1.65
_D0 = 0.05 * 1e12  # each checkpoint is worth en's 5 % share of a 1T-token Unimax run, in target tokens
_CHECKPOINTS = 20  # per curve, from 1 to 500 tokens per parameter
_OTHER_SCALE = 0.05  # tau_other per other-language token: keeps D_eff > 0 when 34 other languages share a run


def _matrix() -> pd.DataFrame:
    from ..datasets import DATA_DIR

    return pd.read_csv(DATA_DIR / "transfer" / "atlas_transfer_matrix_figC2_1dp.csv", index_col=0)


def _saturate(d, u, lam):
    ratio = np.divide(d, u, out=np.zeros_like(d), where=u > 0)
    repeats = np.maximum(ratio - 1.0, 0.0)
    return np.where(repeats > 0, u * (1.0 + -np.expm1(-lam * repeats) / lam), d)


def _sources(matrix, lang) -> list[str]:
    """The other languages by decreasing transfer score to ``lang`` (ties in the matrix's column order)."""
    return list(matrix.loc[lang].drop(lang).astype(float).sort_values(ascending=False, kind="stable").index)


def _law(phi: float, psi: float) -> str:
    """The generating law as text (recorded in the truth)."""
    deff = ("D_eff = max(S(D_t; U_t) + sum_{i in helpers} tau_i S(D_i; U_i) + tau_other S(D_other; U_other), "
            f"{DEFF_FLOOR} S(D_t; U_t)), S(D; U) = D if D <= U else U [1 + (1 - exp(-lambda (D/U - 1))) / lambda]")
    if phi == psi == 0:
        return ("ATLAS, transfer variant with 3 helpers (atlas_jax.laws.ATLAS, --law atlas): "
                f"L = E + A / N^alpha + B / D_eff^beta, {deff}")
    return ("ATLAS with curse factors (not atlas_jax.laws.ATLAS): "
            f"L = E + A K^phi / N^alpha + B K^psi / D_eff^beta, {deff}")


def _truth(rng, matrix, transfer: bool, phi: float, psi: float, lam: float) -> dict:
    langs = sorted(set(TARGETS) | set(CROSSOVER_TOKENS))
    truth = {"law": _law(phi, psi), "phi": phi, "psi": psi, "lambda": lam,
             "helpers": "the 3 sources with the highest transfer score to the target, which the design makes the "
                        "3 languages most often co-sampled with it", "languages": {}}
    for lang in langs:
        u = rng.uniform(size=5)
        p = {"E": 0.55 + 0.3 * u[0], "A": float(np.exp(5.9 + 0.5 * u[1])), "B": float(np.exp(7.0 + 0.5 * u[2])),
             "alpha": 0.36 + 0.08 * u[3], "beta": 0.33 + 0.08 * u[4]}
        scores = matrix.loc[lang].drop(lang).astype(float)
        helpers = _sources(matrix, lang)[:3]
        to_tau = lambda bts: float(max(bts, 0.0) / (2.0 - max(bts, 0.0))) + 0.0 if transfer else 0.0
        p["helpers"] = helpers
        p["tau"] = {h: to_tau(scores[h]) for h in helpers}
        p["tau_other"] = _OTHER_SCALE * to_tau(scores.drop(helpers).mean())
        truth["languages"][lang] = p
    return truth


def _pretrain_loss(truth, frame, langs, target) -> np.ndarray:
    p, lam = truth["languages"][target], truth["lambda"]
    tok = lambda l: frame[f"tokens_{l}"].to_numpy(float)
    s_t = _saturate(tok(target), np.full(len(frame), UNIQUE_TOKENS[target]), lam)
    d_eff = s_t.copy()
    for h in p["helpers"]:
        d_eff += p["tau"][h] * _saturate(tok(h), np.full(len(frame), UNIQUE_TOKENS[h]), lam)
    rest = [l for l in langs if l != target and l not in p["helpers"]]
    d_other = sum(tok(l) for l in rest)
    d_eff += p["tau_other"] * _saturate(d_other, np.full(len(frame), sum(UNIQUE_TOKENS[l] for l in rest)), lam)
    d_eff = np.maximum(d_eff, DEFF_FLOOR * s_t)  # the law's floor (never binds: every tau >= 0)
    k = frame["num_languages"].to_numpy(float)
    n = frame["params"].to_numpy(float)
    return p["E"] + p["A"] * k ** truth["phi"] / n ** p["alpha"] + p["B"] * k ** truth["psi"] / d_eff ** p["beta"]


def _unimax_shares(langs) -> dict[str, float]:
    """en 5 %, the high-resource languages 1.42 % each, the rest share what is left by unique tokens."""
    by_size = sorted((l for l in langs if l != "en"), key=lambda l: -UNIQUE_TOKENS[l])
    high, tail = by_size[:25], by_size[25:]
    shares = {"en": 0.05, **{l: 0.0142 for l in high}}
    left = 1.0 - sum(shares.values())
    total_tail = sum(UNIQUE_TOKENS[l] for l in tail)
    shares.update({l: left * UNIQUE_TOKENS[l] / total_tail for l in tail})
    return shares


def campaign(seed: int = 0, noise: float = 0.01, *, curve_noise: float = 0.0005, transfer: bool = True,
             phi: float = 0.0, psi: float = 0.0, lam: float = 1.0 / 15.0) -> tuple[pd.DataFrame, dict]:
    """Generate the run table and its ground truth (a JSON-ready dict).

    ``phi = psi = 0`` (default): pretraining runs follow the ATLAS law exactly; otherwise the curse factors
    K^phi, K^psi multiply its A and B terms (the paper's fit: 0.11, -0.04). ``noise`` is the log-normal
    sigma of final losses across runs, ``curve_noise`` that of the checkpoints of one run's loss curve
    (smoother: one model, one evaluation set).
    """
    rng = np.random.default_rng(seed)
    matrix = _matrix()
    langs = list(matrix.columns)
    truth = _truth(rng, matrix, transfer, phi, psi, lam)
    runs = []  # (run_type, N, {lang: tokens}, eval languages, regime, step)

    for t in TARGETS:
        for i, n in enumerate(MODEL_SIZES):
            runs.append(("monolingual", n, {t: n * _TOKENS_PER_PARAM[i % 5]}, [t]))
    for t in TARGETS:
        for h in truth["languages"][t]["helpers"]:
            for i, n in enumerate(MODEL_SIZES[::2]):
                for share in (0.5, 0.75):
                    d = n * _TOKENS_PER_PARAM[(i + int(4 * share)) % 5] * 2
                    runs.append(("bilingual", n, {t: share * d, h: (1 - share) * d}, [t]))
    shares = _unimax_shares(langs)
    for i, n in enumerate(MODEL_SIZES):
        d = n * _TOKENS_PER_PARAM[i % 5] * 4
        runs.append(("unimax", n, {l: s * d for l, s in shares.items()}, [t for t in TARGETS if shares[t] >= 1e-3]))
    capacity = {}  # (N, D_t, mixture) -> targets; identical mixtures (all 38 languages) are one run
    for t in TARGETS:
        order = [t] + _sources(matrix, t)
        for j, k in enumerate(_CAPACITY_K):
            for i, n in enumerate(MODEL_SIZES[::2]):
                key = (n, n * _TOKENS_PER_PARAM[(i + j) % 5], frozenset(order[:k]))
                capacity.setdefault(key, []).append(t)
    runs += [("capacity", n, {l: d_t for l in mix}, evals) for (n, d_t, mix), evals in capacity.items()]

    rows = []
    for r, (kind, n, mix, evals) in enumerate(runs):
        total = sum(mix.values())
        for t in evals:
            rows.append({"run": r, "group": kind, "params": float(n), "tokens": total, "language": t,
                         "num_languages": len(mix), "regime": "pretrain", "step": int(round(total / 2**20)),
                         **{f"tokens_{l}": mix.get(l, 0.0) for l in langs}})
    frame = pd.DataFrame(rows)
    loss = np.empty(len(frame))
    for t in TARGETS:
        sel = (frame["language"] == t).to_numpy()
        loss[sel] = _pretrain_loss(truth, frame[sel], langs, t)
    frame["loss"] = loss

    curves = _curves(truth, langs, len(runs))
    frame = pd.concat([frame, curves], ignore_index=True)
    for l in langs:
        frame[f"unique_{l}"] = UNIQUE_TOKENS[l]
    sigma = np.where(frame["group"].isin(["scratch", "finetune"]), curve_noise, noise)
    frame["loss"] = frame["loss"] * np.exp(rng.normal(0.0, 1.0, len(frame)) * sigma)
    truth.update({"seed": seed, "noise": noise, "curve_noise": curve_noise, "transfer": transfer,
                  "n_runs": int(frame["run"].nunique()), "n_rows": len(frame)})
    return frame, truth


def _curves(truth, langs, first_run) -> pd.DataFrame:
    """Scratch and finetune loss curves at the sizes ``CURVE_SIZES``, crossing at D*(N) (module doc)."""
    rows = []
    for j, (lang, cross_2b) in enumerate(CROSSOVER_TOKENS.items()):
        p = truth["languages"][lang]
        p["finetune"] = {"D0": _D0, "crossover_gamma": CROSSOVER_GAMMA, "sizes": {}}
        for m, n in enumerate(map(float, CURVE_SIZES)):
            cross = crossover_truth(lang, n)
            gap = p["B"] / cross ** p["beta"] - p["B"] / (cross + _D0) ** p["beta"]
            c = 1.0 + gap * n ** p["alpha"] / p["A"]
            p["finetune"]["sizes"][str(int(n))] = {"capacity_factor": float(c), "crossover_tokens": cross}
            d = n * np.geomspace(1.0, 500.0, _CHECKPOINTS)
            scratch = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
            tuned = p["E"] + c * p["A"] / n ** p["alpha"] + p["B"] / (d + _D0) ** p["beta"]
            for regime, kind, loss in (("pretrain", "scratch", scratch), ("finetune", "finetune", tuned)):
                run = first_run + 2 * (j * len(CURVE_SIZES) + m) + (regime == "finetune")
                for dk, lk in zip(d, loss):
                    rows.append({"run": run, "group": kind, "params": n, "tokens": dk, "language": lang,
                                 "num_languages": 1, "regime": regime, "step": int(round(dk / 2**20)),
                                 **{f"tokens_{l}": dk if l == lang else 0.0 for l in langs}, "loss": lk})
    return pd.DataFrame(rows)


def crossover_truth(language: str, n_params: float) -> float:
    """The campaign's true crossover tokens D*(N) = D*_2B (N / N_2B)^(gamma - 1), i.e. C* = 6 N D* = k N^gamma."""
    return CROSSOVER_TOKENS[language] * (n_params / _D_MONO) ** (CROSSOVER_GAMMA - 1.0)


def write_campaign(directory: str | Path, seed: int = 0, noise: float = 0.01) -> tuple[Path, Path]:
    """Write ``campaign.csv`` and ``campaign_truth.json`` into ``directory``, each file atomically (the folder's
    other files, such as the bundled data's SOURCE.md, stay)."""
    from ..io import atomic_output_file, write_json

    frame, truth = campaign(seed, noise)
    directory = Path(directory)
    with atomic_output_file(directory / "campaign.csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.10g")
    with atomic_output_file(directory / "campaign_truth.json") as tmp:
        write_json(tmp, truth)
    return directory / "campaign.csv", directory / "campaign_truth.json"
