"""NUTS speed: the hierarchical ATLAS posterior of the bundled campaign's target languages.

Target (issue 4): 4 chains x 1,000 draws (1,000 warm-up), r_hat <= 1.01, no divergences, in at most 60 s
on the 2-core CPU. Prints wall time (point fit, sampling, predictive), diagnostics and bulk ESS per
second, and writes ``results/posterior_<date>.json``.

    python benchmarks/bench_posterior.py [--law atlas] [--chains 4] [--draws 1000] [--warmup 1000]
        [--target-accept 0.95]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path


import atlas_jax as aj
from atlas_jax.io import machine_record, save_record

TARGETS = ("en", "fr", "ru", "zh", "bn", "sw", "yo")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--law", default="atlas")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--target-accept", type=float, default=0.95)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args(argv)
    frame = aj.load_campaign()[0].frame
    runs = frame[(frame["regime"] == "pretrain") & frame["language"].isin(TARGETS) & (frame["group"] != "scratch")]
    runs = runs.reset_index(drop=True)
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        post = aj.posterior(args.law, runs, group_by="language", hierarchical=True,
                            chains=args.chains, draws=args.draws, warmup=args.warmup, seed=0,
                            target_accept=args.target_accept)
    wall = time.perf_counter() - t
    d = post.diagnostics
    res = {**machine_record(), "law": args.law, "languages": list(post.groups), "rows": len(runs),
           "chains": args.chains, "draws": args.draws, "warmup": args.warmup, "target_accept": args.target_accept,
           "chain_method": post.settings["chain_method"],
           "wall_s": wall, "timings": post.timings, "divergences": d["divergences"], "r_hat_max": d["r_hat_max"],
           "ess_min": d["ess_min"], "ess_min_per_s": d["ess_min"] / post.timings["sampling_s"],
           "target": {"wall_s": 60.0, "r_hat_max": 1.01, "divergences": 0},
           "warnings": [str(w.message) for w in caught]}
    print(json.dumps({k: v for k, v in res.items() if k != "warnings"}, indent=1))
    print(f"{args.law} hierarchical, {len(post.groups)} languages, {args.chains} x {args.draws} draws: {wall:.1f} s "
          f"(target 60 s), {d['divergences']} divergences, max r_hat {d['r_hat_max']:.4f}, min bulk ESS "
          f"{d['ess_min']:.0f} ({res['ess_min_per_s']:.1f}/s)")
    save_record(args.out, "posterior", res)


if __name__ == "__main__":
    main()
