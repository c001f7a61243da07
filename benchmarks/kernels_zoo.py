"""Whole zoo models predicted from their kernels, each family left out of the model-level fit, over seeds.

    python benchmarks/kernels_zoo.py --target host-cpu-tf --target host-cpu-tflite --seeds 5

The kernel regressors never see a whole model (they learn from the kernel zoo alone); the only model-level
fit is the overhead (non-negative coefficients, the cache size and I/O share, as `kernel-train` chooses them), refitted without
the family it predicts. Prints MAPE and
the share within +-10% per seed (the seed changes the kernel regressors' forests), and per family.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed.. (choose settings on others than 0..)")
    parser.add_argument("--rows", metavar="CSV", help="write each model's measured and predicted latency (mean over seeds) "
                        "per target to CSV (the target's name is inserted before the suffix)")
    args = parser.parse_args()
    from perfpred import config
    from perfpred.kernels import predictor, training

    params = config.load_params()
    for target in args.target:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            models = training.model_rows(target, params)
        kernels = training.kernel_table(target, params)
        measured = models["latency_ms"].to_numpy()
        mape, within, families, predictions = [], [], [], []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            fitted = predictor.KernelModel.fit(target, kernels, seed, overhead_groups=training.overhead_groups(target))
            predicted, _ = training.family_residuals(models, training.terms_by_candidate(models, fitted), fitted.call_ms)
            error = np.abs(predicted - measured) / measured
            predictions.append(predicted)
            mape.append(100 * error.mean())
            within.append(100 * (error <= 0.10).mean())
            families.append(pd.Series(100 * error, index=models["family"]).groupby(level=0).mean())
        print(f"\n{target}: {len(models)} zoo models, {len(kernels)} kernels measured, seeds {args.first_seed}-{args.first_seed + args.seeds - 1}")
        print(f"  MAPE (family left out) {np.mean(mape):.1f} +- {np.std(mape):.1f} %  (per seed: "
              f"{', '.join(f'{m:.1f}' for m in mape)})")
        print(f"  within +-10%           {np.mean(within):.0f} +- {np.std(within):.0f} %")
        by_family = pd.concat(families, axis=1).mean(axis=1).round(1)
        print("  MAPE per family (mean over seeds): " + ", ".join(f"{f} {v}" for f, v in by_family.items()))
        if args.rows:
            from pathlib import Path

            out = Path(args.rows)
            out = out.with_name(f"{out.stem}-{target}{out.suffix or '.csv'}")
            predicted = np.mean(predictions, axis=0)
            models[["model", "family"]].assign(latency_ms=measured, predicted_ms=predicted,
                                                error_pct=100 * (predicted - measured) / measured).to_csv(out, index=False)
            print(f"  rows: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
