"""A long seed sweep split into Ray tasks, so that every worker of a Ray cluster fits seeds.

`train.executor=ray` (and `train.ray_address`, e.g. 127.0.0.1:6379 or "auto") sends the sweep of
`perfpred train` here. Each task runs `perfpred.model.sweep.seed_sweep` on a contiguous block of seeds
with one process; the blocks are merged in seed order, so the result equals the local sweep's.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from perfpred import config
from perfpred.model import sweep

#: tasks per CPU of the cluster: a few blocks per worker even out slow and fast blocks
TASKS_PER_CPU = 4


def connect(address: str | None = None) -> None:
    """Join the Ray cluster at `address` (None: start a local one) unless this process is already in one."""
    import ray

    if ray.is_initialized():
        return
    # Workers on the cluster find this project's conf/ and tables (same path on every node) and the store.
    env_vars = {"PERFPRED_ROOT": str(config.project_root())}
    if os.environ.get("MLFLOW_TRACKING_URI"):
        env_vars["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_TRACKING_URI"]
    ray.init(address=address or None, runtime_env={"env_vars": env_vars}, log_to_driver=False,
             include_dashboard=False, configure_logging=False)


def seed_blocks(first_seed: int, seeds: int, blocks: int) -> list[tuple[int, int]]:
    """(first seed, count) of `blocks` contiguous, near-equal blocks covering first_seed..first_seed+seeds-1."""
    bounds = np.linspace(first_seed, first_seed + seeds, min(blocks, seeds) + 1).round().astype(int)
    return [(int(start), int(stop - start)) for start, stop in zip(bounds[:-1], bounds[1:], strict=True) if stop > start]


def _sweep_block(estimator, features: pd.DataFrame, target: np.ndarray, first_seed: int, seeds: int, test_size: float):
    import ray

    result = sweep.seed_sweep(estimator, features, target, seeds, test_size, n_jobs=1, progress=False, first_seed=first_seed)
    return ray.get_runtime_context().get_node_id(), result


def seed_sweep(
    estimator, features: pd.DataFrame, target: np.ndarray, seeds: int, test_size: float = 0.2,
    first_seed: int = 0, address: str | None = None, tasks: int | None = None,
) -> sweep.SweepResult:
    """`sweep.seed_sweep` over a Ray cluster: seeds first_seed..first_seed+seeds-1 in blocks, one Ray task per block."""
    return seed_sweep_on_nodes(estimator, features, target, seeds, test_size, first_seed, address, tasks)[0]


def seed_sweep_on_nodes(
    estimator, features: pd.DataFrame, target: np.ndarray, seeds: int, test_size: float = 0.2,
    first_seed: int = 0, address: str | None = None, tasks: int | None = None,
) -> tuple[sweep.SweepResult, dict[str, int]]:
    """`seed_sweep`, and how many seeds each node of the cluster fitted (node id -> seeds)."""
    import ray

    connect(address)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    blocks = seed_blocks(first_seed, seeds, tasks or TASKS_PER_CPU * cpus)
    # SPREAD: the default policy packs tasks onto the driver's node while it has room (and the shared
    # objects live there), so a small sweep could run on the head alone and leave the workers idle.
    remote = ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(_sweep_block)
    shared = [ray.put(estimator), ray.put(features), ray.put(np.asarray(target, dtype="float64"))]
    done = ray.get([remote.remote(*shared, start, count, test_size) for start, count in blocks])
    seeds_per_node: dict[str, int] = {}
    for node, part in done:
        seeds_per_node[node] = seeds_per_node.get(node, 0) + len(part.seeds)
    return merge([part for _, part in done]), seeds_per_node


def merge(parts: list[sweep.SweepResult]) -> sweep.SweepResult:
    """One SweepResult from blocks in seed order (as the local sweep would have returned it)."""
    merged = sweep.SweepResult(
        seeds=np.concatenate([p.seeds for p in parts]),
        mape_pct=np.concatenate([p.mape_pct for p in parts]),
        rows=np.concatenate([p.rows for p in parts]).astype("int64"),
        predicted=np.concatenate([p.predicted for p in parts]),
    )
    for part in parts:
        merged.failures.update(part.failures)
    return merged
