"""How fast perfpred answers: wall time of `perfpred predict` on one JSON descriptor (start-up included), and
predictions per second of each champion predictor on a batch through the Python API.

Needs trained champions in the local MLflow store (or --tracking-uri). Run by hand from the repository root:

    PYTHONPATH=src python benchmarks/predict_speed.py [--descriptor PATH] [--runs 5] [--batch-rows 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_DESCRIPTOR = "data/raw/jetson-bouzidi/architectures/ResNet-50_224.json"


@dataclass(frozen=True)
class BenchmarkConfig:
    """What to measure and how often."""

    descriptor: str = DEFAULT_DESCRIPTOR
    cli_runs: int = 5  # after one first (cold) run reported apart
    batch_rows: int = 10_000
    batch_repeats: int = 5
    level: float = 0.9
    tracking_uri: str | None = None


@dataclass(frozen=True)
class Timing:
    """Wall times of repeated runs, in seconds."""

    first_s: float
    mean_s: float
    p50_s: float
    min_s: float
    max_s: float
    stdev_s: float

    @classmethod
    def of(cls, first_s: float, runs_s: list[float]) -> Timing:
        """Summary of the warmed-up runs, with the first run apart."""
        return cls(
            first_s=first_s,
            mean_s=statistics.fmean(runs_s),
            p50_s=statistics.median(runs_s),
            min_s=min(runs_s),
            max_s=max(runs_s),
            stdev_s=statistics.stdev(runs_s) if len(runs_s) > 1 else 0.0,
        )


def cli_wall_time(cfg: BenchmarkConfig) -> dict:
    """Wall times of `perfpred predict DESCRIPTOR --json` in fresh processes, start-up included.

    `cold_cache_s`: the predictors loaded through MLflow (an empty predictor cache); `warm`: the usual case,
    predictors read from the cache; `import_floor`: a bare interpreter importing only what unpickling the
    predictors needs (pandas, scikit-learn, xgboost), the part of the start-up no cache can remove.
    """
    command = [sys.executable, "-m", "perfpred.cli", "predict", cfg.descriptor, "--json", "--level", str(cfg.level)]
    if cfg.tracking_uri:
        command += ["--tracking-uri", cfg.tracking_uri]
    with tempfile.TemporaryDirectory() as empty_cache:
        cold_s = _timed(command, {"PERFPRED_PREDICTOR_CACHE": empty_cache})
    floor = [_timed([sys.executable, "-c", "import pandas, sklearn.pipeline, xgboost"]) for _ in range(cfg.cli_runs + 1)]
    warm = [_timed(command) for _ in range(cfg.cli_runs + 1)]
    # One more run with -X importtime: which heavy packages did start-up import?
    traced = subprocess.run([sys.executable, "-X", "importtime", *command[1:]], capture_output=True, text=True)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in traced.stderr.splitlines() if "|" in line}
    return {
        "cold_cache_s": cold_s,
        "warm": asdict(Timing.of(warm[0], warm[1:])),
        "import_floor": asdict(Timing.of(floor[0], floor[1:])),
        "heavy_imports": sorted(imported & HEAVY_PACKAGES),
        "load_average_1min": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }


def _timed(command: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    return elapsed


HEAVY_PACKAGES = {"tensorflow", "keras", "torch", "xgboost", "sklearn", "mlflow", "hydra", "pandas"}


def batch_throughput(cfg: BenchmarkConfig) -> dict[str, dict]:
    """Predictions per second of each champion on a batch of real feature rows, point and interval."""
    import pandas as pd

    from perfpred import config
    from perfpred.data import schema
    from perfpred.model import estimators
    from perfpred.serve import loader, predict

    results = {}
    for target, metrics in predict.champion_targets(cfg.tracking_uri).items():
        table = pd.read_parquet(config.path("measurements") / f"{target}.parquet")
        for metric in metrics:
            predictor = loader.load_predictor(target, metric, tracking_uri=cfg.tracking_uri)
            column = schema.metric_column(metric)
            rows = table
            if not set(predictor.features) <= set(rows.columns):  # a kernel-level champion reads the zoo's kernel terms
                rows = estimators.with_kernel_terms(rows, target)
            rows = rows[rows[column].notna()][list(predictor.features)].dropna()
            batch = pd.concat([rows] * (cfg.batch_rows // len(rows) + 1), ignore_index=True).iloc[: cfg.batch_rows]
            point = _repeat(lambda batch=batch, predictor=predictor: predictor.predict(batch), cfg.batch_repeats)
            interval = _repeat(
                lambda batch=batch, predictor=predictor: predictor.predict_interval(batch, level=cfg.level), cfg.batch_repeats
            )
            plain = _repeat(
                lambda batch=batch, predictor=predictor: predictor.predict_interval(batch, level=cfg.level, widen=False),
                cfg.batch_repeats,
            )
            results[f"{target}-{metric}"] = {
                "algorithm": predictor.algorithm,
                "version": predictor.version,
                "predict_per_s": cfg.batch_rows / point.p50_s,
                "predict_interval_per_s": cfg.batch_rows / interval.p50_s,  # with the domain check and widening
                "predict_interval_unwidened_per_s": cfg.batch_rows / plain.p50_s,
                "first_batch_s": point.first_s,
            }
    return results


def _repeat(call, repeats: int) -> Timing:
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return Timing.of(times[0], times[1:])


def main() -> int:
    """Run both measurements and print them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--descriptor", default=DEFAULT_DESCRIPTOR)
    parser.add_argument("--runs", type=int, default=BenchmarkConfig.cli_runs)
    parser.add_argument("--batch-rows", type=int, default=BenchmarkConfig.batch_rows)
    parser.add_argument("--tracking-uri")
    args = parser.parse_args()
    if not Path(args.descriptor).exists():
        raise SystemExit(f"{args.descriptor}: no such descriptor")
    cfg = BenchmarkConfig(descriptor=args.descriptor, cli_runs=args.runs, batch_rows=args.batch_rows, tracking_uri=args.tracking_uri)
    cli = cli_wall_time(cfg)
    throughput = batch_throughput(cfg)
    print(json.dumps({"config": asdict(cfg), "cli": cli, "batch_predictions_per_s": throughput}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
