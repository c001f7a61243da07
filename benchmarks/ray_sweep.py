"""Seed sweeps of one (target, metric) on a local 2-node Ray cluster vs this machine's joblib sweep.

    PYTHONPATH=src python benchmarks/ray_sweep.py --seeds 200 [--target jetson-agx-xavier --metric latency]
    PYTHONPATH=src python benchmarks/ray_sweep.py --seeds 200 --address HOST:PORT   # an existing cluster

Starts `ray start --head` and one worker node on 127.0.0.1 (one CPU each, as tests/test_ray.py does) unless
--address is given, times `--seeds` seeds of every algorithm with `train.n_jobs` joblib processes and as
Ray tasks, checks that the per-seed MAPEs are equal, and extrapolates both to 10,000 seeds.
Both share this machine's cores: a 2-node cluster on one 2-core machine shows the overhead of Ray, not a speed-up;
nodes on other machines add their cores.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from perfpred import config
from perfpred.data import schema
from perfpred.model import estimators, ray_sweep, sweep, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="jetson-agx-xavier")
    parser.add_argument("--metric", default="latency")
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--n-jobs", type=int, default=2, help="joblib processes of the local sweep")
    parser.add_argument("--address", default=None, help="an existing Ray cluster (default: start a 2-node one here)")
    parser.add_argument("--algorithms", nargs="*", default=[a for a in config.group_options("algorithm") if a != "ens"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    table = estimators.training_table(args.target, args.metric)
    features = estimators.feature_columns(table)
    X, y = table[features], table[schema.metric_column(args.metric)].to_numpy("float64")
    print(f"{args.target} {args.metric}: {len(table)} rows, {args.seeds} seeds per algorithm")
    with cluster(args.address) as address:
        started = time.perf_counter()
        ray_sweep.connect(address)
        print(f"joined the cluster in {time.perf_counter() - started:.1f} s")
        totals = {"local": 0.0, "ray": 0.0}
        for algorithm in args.algorithms:
            cfg, _ = train.tuned_config(args.target, args.metric, algorithm)
            estimator = train.build_estimator(cfg.algorithm, args.target, args.metric)
            started = time.perf_counter()
            local = sweep.seed_sweep(estimator, X, y, args.seeds, n_jobs=args.n_jobs, progress=False)
            local_s = time.perf_counter() - started
            started = time.perf_counter()
            distributed, per_node = ray_sweep.seed_sweep_on_nodes(estimator, X, y, args.seeds)
            ray_s = time.perf_counter() - started
            equal = np.array_equal(local.mape_pct, distributed.mape_pct, equal_nan=True)
            totals["local"] += local_s / args.seeds * 10_000
            totals["ray"] += ray_s / args.seeds * 10_000
            print(f"{algorithm:5s} local {local_s:7.1f} s  ray {ray_s:7.1f} s  ({len(per_node)} nodes: "
                  f"{sorted(per_node.values())} seeds)  MAPE {sweep.summary(local)['mape_mean']:.3f} %  equal: {equal}", flush=True)
        print(f"extrapolated to 10,000 seeds x {len(args.algorithms)} algorithms: local {totals['local'] / 60:.1f} min, "
              f"ray {totals['ray'] / 60:.1f} min (linear in seeds, from {args.seeds} seeds each)")


@contextlib.contextmanager
def cluster(address: str | None):
    """The given cluster, or a head and one worker node started on 127.0.0.1 for the run."""
    if address:
        yield address
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import servers

    started = time.perf_counter()
    with servers.ray_cluster(workers=1, cpus_per_node=1) as started_address:
        print(f"started a head and a worker node in {time.perf_counter() - started:.1f} s")
        yield started_address


if __name__ == "__main__":
    main()
