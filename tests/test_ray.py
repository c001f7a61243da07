"""Sweeps on a real Ray cluster on 127.0.0.1 (a head and one worker node): the same metrics as locally (issue 15, item 2)."""

import numpy as np
import pytest

import servers
import train_helpers
import trained_store
from perfpred.model import ray_sweep, sweep

pytestmark = [pytest.mark.server, pytest.mark.slow]
nano_subset = train_helpers.nano_subset
COMPARED = ("mape_mean", "mape_std", "mape_median", "mape_p5", "mape_p95", "mape_best", "best_seed",
            "mape_unseen_family", "coverage_90", "seeds")


@pytest.fixture(scope="module")
def cluster():
    """`ray start --head` plus one `ray start --address` worker node, one CPU each; this process joins it."""
    import ray

    with servers.ray_cluster(workers=1, cpus_per_node=1) as address:
        yield address
        ray.shutdown()


def test_seed_blocks_cover_every_seed_once():
    blocks = ray_sweep.seed_blocks(100, 10_000, 8)
    seeds = np.concatenate([np.arange(start, start + count) for start, count in blocks])
    assert len(blocks) == 8 and np.array_equal(seeds, np.arange(100, 10_100))
    assert ray_sweep.seed_blocks(0, 3, 8) == [(0, 1), (1, 1), (2, 1)]  # never an empty block


@pytest.mark.parametrize("algorithm", ["poly", "xgb"])
def test_ray_sweep_equals_the_local_sweep(cluster, nano_subset, algorithm):
    from perfpred.data import schema
    from perfpred.model import estimators, train

    cfg, _ = train.tuned_config("jetson-nano", "latency", algorithm, use_tuned=False)
    estimator = train.build_estimator(cfg.algorithm, "jetson-nano", "latency", use_tuned=False)
    features = estimators.feature_columns(nano_subset)
    X, y = nano_subset[features], nano_subset[schema.metric_column("latency")].to_numpy("float64")
    local = sweep.seed_sweep(estimator, X, y, seeds=24, n_jobs=1, progress=False, first_seed=7)
    distributed, seeds_per_node = ray_sweep.seed_sweep_on_nodes(estimator, X, y, seeds=24, first_seed=7, address=cluster)
    assert len(seeds_per_node) == 2 and sum(seeds_per_node.values()) == 24  # both nodes fitted seeds
    assert np.array_equal(distributed.seeds, local.seeds)
    np.testing.assert_array_equal(distributed.mape_pct, local.mape_pct)
    np.testing.assert_array_equal(distributed.rows, local.rows)
    np.testing.assert_array_equal(distributed.predicted, local.predicted)
    assert sweep.summary(distributed) == sweep.summary(local)


def test_ray_launcher_and_executor_give_the_local_metrics(cluster, tmp_path):
    """`perfpred train -m ... hydra/launcher=ray train.executor=ray` against the basic launcher, same seeds."""
    from perfpred.serve import registry

    project = tmp_path / "project"
    project.mkdir()
    trained_store.make_project(project, {"jetson-nano": "nano"}, train_fraction=0.3)
    sweep_args = ["train", "-m", "target=jetson-nano", "metric=latency,memory", "algorithm=poly,xgb",
                  "train.seeds=6", "train.family_folds=2", "train.coverage_folds=2", "train.use_tuned=false", "train.outputs=false"]
    stores = {"ray": f"sqlite:///{tmp_path / 'ray.db'}", "local": f"sqlite:///{tmp_path / 'local.db'}"}
    trained_store.perfpred(project, *sweep_args, "hydra/launcher=ray", f"hydra.launcher.address={cluster}",
                           "train.executor=ray", f"train.ray_address={cluster}", tracking_uri=stores["ray"])
    trained_store.perfpred(project, *sweep_args, tracking_uri=stores["local"])
    found = {}
    for name, uri in stores.items():
        client = registry.client(uri)
        runs = client.search_runs([client.get_experiment_by_name("jetson-nano").experiment_id])
        found[name] = {(r.data.tags["metric"], r.data.tags["algorithm"]): {k: r.data.metrics[k] for k in COMPARED}
                       for r in runs if r.info.status == "FINISHED"}
    assert len(found["ray"]) == 4 and found["ray"] == found["local"]
