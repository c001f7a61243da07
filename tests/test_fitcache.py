"""The fits one `perfpred train` run shares (perfpred.model.fitcache): same class, parameters and rows, one fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def rows() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    features = pd.DataFrame({"flops": rng.uniform(1e6, 1e9, 60), "activations": rng.uniform(1e4, 1e7, 60),
                             "params": rng.uniform(1e3, 1e7, 60)})
    return features, 1e-8 * features["flops"].to_numpy() * rng.uniform(0.8, 1.2, 60) + 0.5


def test_an_ensemble_member_reads_its_own_jobs_fit_and_nothing_else_is_shared(rows):
    from sklearn.base import clone
    from sklearn.ensemble import VotingRegressor
    from sklearn.svm import SVR

    from perfpred.model import estimators, fitcache

    features, target = rows
    svr = estimators.BaselineRatioRegressor(estimators.regression_pipeline(SVR(C=10.0, epsilon=0.02)), ["flops"])
    alone = clone(svr).fit(features, target)
    with fitcache.scoped() as folder:
        clone(svr).fit(features, target)
        assert not list(folder.glob("*.pkl"))  # nothing declared wanted: nothing kept
        fitcache.want(svr)  # an ensemble of the run holds it
        job = clone(svr).fit(features, target)
        files = set(folder.glob("*.pkl"))
        assert len(files) == 2  # the ratio model and its log-target regressor
        other = estimators.BaselineRatioRegressor(estimators.regression_pipeline(SVR(C=1.0)), ["params"])
        ensemble = VotingRegressor([("svr", clone(svr)), ("other", other)]).fit(features, target)
        assert set(folder.glob("*.pkl")) == files  # the member read the job's fit; the other is not wanted
        np.testing.assert_allclose(ensemble.named_estimators_["svr"].predict(features), job.predict(features))
        clone(svr).fit(features.iloc[:-1], target[:-1])  # other rows: fitted anew (and kept, being wanted)
        assert len(set(folder.glob("*.pkl"))) == 4
    assert not folder.exists()
    np.testing.assert_allclose(job.predict(features), alone.predict(features))


def test_only_members_of_the_runs_ensembles_are_wanted():
    from perfpred.model import fitcache

    algorithms = ["poly", "svr", "rf", "xgb", "ens", "pooled_svr", "pooled_ens", "ens_kernels", "kernels", "blend_kernels"]
    assert [a for a in algorithms if fitcache.is_member(a, algorithms)] == ["svr", "xgb", "pooled_svr", "ens_kernels",
                                                                             "kernels"]
    assert not fitcache.is_member("svr", ["svr", "xgb"])  # no ensemble in the run: nothing to keep


def test_parameters_are_described_exactly_or_not_cached():
    from sklearn.linear_model import Ridge

    from perfpred.model import estimators, fitcache

    # scikit-learn's repr elides the middle of a long description: the signature does not
    long_a = estimators.BaselineRatioRegressor(Ridge(alpha=1.0), [f"feature_{i}" for i in range(200)])
    long_b = estimators.BaselineRatioRegressor(Ridge(alpha=1.0), [f"feature_{i}" for i in range(100)] + ["other"]
                                               + [f"feature_{i}" for i in range(101, 200)])
    assert fitcache.signature(long_a) != fitcache.signature(long_b)
    table = pd.DataFrame({"x": [1.0, 2.0]})
    assert fitcache.signature(estimators.BaselineRatioRegressor(Ridge(), table)) != \
        fitcache.signature(estimators.BaselineRatioRegressor(Ridge(), table.assign(x=[1.0, 3.0])))

    class Opaque:  # known only by its address
        pass

    with fitcache.scoped():
        assert fitcache.key(estimators.BaselineRatioRegressor(Ridge(), ["x"]), table, [1.0, 2.0]) is not None
        assert fitcache.key(estimators.BaselineRatioRegressor(Opaque(), ["x"]), table, [1.0, 2.0]) is None
