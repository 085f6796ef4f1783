"""Simulation check of the posterior intervals: nominal 90 % intervals should cover the true parameters
of 85-95 % of synthetic datasets (issue 4). 200 Chinchilla-form campaigns (36 runs, 1 % noise) by default;
see :mod:`atlas_jax.bayes.calibration`. Writes ``validation/results/calibration_<date>.json``.

    python validation/calibration.py [--datasets 200] [--draws 500] [--warmup 500]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path


from atlas_jax.bayes.calibration import interval_coverage
from atlas_jax.io import machine_record, save_record


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=200)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--level", type=float, default=0.9)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", UserWarning)
    t = time.perf_counter()
    table = interval_coverage(args.datasets, level=args.level, draws=args.draws, warmup=args.warmup, progress=True)
    by_param = table.groupby("param", sort=False)["covered"].mean()
    res = {**machine_record(), "datasets": args.datasets, "level": args.level, "draws": args.draws,
           "warmup": args.warmup, "chains": 2, "coverage": by_param.to_dict(), "coverage_all": float(table["covered"].mean()),
           "target": [0.85, 0.95], "divergences": int(table.drop_duplicates("batch")["divergences"].sum()),
           "r_hat_max": float(table["r_hat"].max()), "wall_s": time.perf_counter() - t}
    print(json.dumps(res, indent=1))
    save_record(args.out, "calibration", res)


if __name__ == "__main__":
    main()
