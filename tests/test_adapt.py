"""Target descriptors, the pooled algorithm, `perfpred adapt` and `perfpred select` on real Jetson rows in tmp_path."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
BOARDS = {"jetson-nano": "nano", "jetson-tx2": "tx2", "jetson-agx-xavier": "agx-xavier"}


@pytest.fixture(scope="module")
def board_tables() -> dict[str, pd.DataFrame]:
    """Latency rows of the three boards: up to 10 rows of every family (real measurements, read once)."""
    from perfpred.data import bouzidi

    tables = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for target, board in BOARDS.items():
            table, _ = bouzidi.read_board(REPO / "data/raw/jetson-bouzidi", board, ["latency"])
            table = table[table["latency_ms"].notna()]
            tables[target] = table.groupby("family", group_keys=False).head(10).reset_index(drop=True)
    return tables


@pytest.fixture
def project(tmp_path, monkeypatch, board_tables):
    """conf/ and the three boards' tables in tmp_path, an empty MLflow store; the pooled caches emptied."""
    from perfpred.data import measurements
    from perfpred.model import hardware, pooled

    shutil.copytree(REPO / "conf", tmp_path / "conf")
    for target, table in board_tables.items():
        measurements.write_table(table, tmp_path / f"data/measurements/{target}.parquet")
    monkeypatch.setenv("PERFPRED_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns/mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    pooled._table.cache_clear()
    hardware._descriptor_cached.cache_clear()
    yield tmp_path
    pooled._table.cache_clear()
    hardware._descriptor_cached.cache_clear()


def test_every_target_has_a_numeric_descriptor_and_hosts_read_the_machine():
    from perfpred import config
    from perfpred.model import hardware

    for name in config.group_options("target"):
        described = hardware.descriptor(name)
        assert set(described) == set(hardware.HARDWARE_FIELDS), name
        assert all(np.isfinite(v) and v >= 0 for v in described.values()), name
        assert hardware.toolchain_version(config.target_config(name)), name
    host = hardware.descriptor("host-cpu-tf")
    assert host["cuda_cores"] == 0 and host["cpu_cores"] == os.cpu_count() and host["memory_gb"] > 0.5
    assert hardware.descriptor("jetson-agx-xavier")["cuda_cores"] > hardware.descriptor("jetson-nano")["cuda_cores"]


def test_a_bad_hardware_file_names_the_file_and_the_field(tmp_path):
    from perfpred.model import hardware

    path = tmp_path / "board.yaml"
    path.write_text("hardware: {cuda_cores: 128}\n")
    with pytest.raises(ValueError, match=r"board.yaml: `hardware` lacks \['gpu_arch_generation'"):
        hardware.descriptor("new-board", path)


def test_pooled_never_trains_on_a_network_held_out_of_its_target(project, board_tables):
    from perfpred.model import pooled

    nano = board_tables["jetson-nano"]
    features = [c for c in nano.columns if c in pooled.schema.FEATURE_COLUMNS and nano[c].notna().all()]
    held = nano["family"] == nano["family"].iloc[0]  # a whole family out, as leave-family-out does
    estimator = pooled.PooledRegressor(target="jetson-nano", metric="latency", n_estimators=50)
    used = estimator.source_rows(nano.loc[~held, features])
    assert {name for name, _, _ in used} == {"jetson-tx2", "jetson-agx-xavier"}
    held_keys = set(pooled.network_keys(nano.loc[held]))
    for _, table, _ in used:
        assert not set(pooled.network_keys(table)) & held_keys
    other = board_tables["jetson-tx2"]
    assert set(pooled.network_keys(other)) & held_keys  # the sources do have them: the exclusion is what removed them
    estimator.fit(nano.loc[~held, features], nano.loc[~held, "latency_ms"])
    predicted = estimator.predict(nano.loc[held, features])
    assert np.all(np.isfinite(predicted)) and np.all(predicted > 0)


@pytest.mark.parametrize("algorithm, overrides", [("pooled", ["algorithm.estimator.n_estimators=60"]),
                                                   ("pooled_svr", [])])
def test_pooled_competes_for_the_champion_through_train(project, algorithm, overrides):
    from perfpred.model import train
    from perfpred.serve import loader, registry

    train.main(["target=jetson-tx2", "metric=latency", f"algorithm={algorithm}", "train.seeds=2", "train.n_jobs=1",
                "train.outputs=false", "train.family_folds=2", *overrides])
    versions = registry.client().search_model_versions("name='jetson-tx2-latency'")
    assert [v.tags["algorithm"] for v in versions] == [algorithm]
    assert float(versions[0].tags["mape_mean"]) < 60
    served = loader.load_predictor("jetson-tx2", "latency")
    assert served.algorithm == algorithm
    tx2 = pd.read_parquet(project / "data/measurements/jetson-tx2.parquet")
    predicted = served.estimator.predict(tx2[served.features])
    assert np.all(np.isfinite(predicted)) and np.median(np.abs(predicted / tx2["latency_ms"] - 1)) < 0.5


def _write_rows(table: pd.DataFrame, path: Path) -> Path:
    table.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_adapt_registers_a_champion_for_a_board_without_a_table(project, board_tables, capsys):
    import perfpred
    from perfpred import cli

    agx = board_tables["jetson-agx-xavier"].sample(frac=1.0, random_state=0).reset_index(drop=True)
    given, left_out = agx.iloc[:30], agx.iloc[30:]
    hardware_file = project / "xavier-like.yaml"
    hardware_file.write_text("hardware:\n" + "".join(f"  {k}: {v}\n" for k, v in {
        "gpu_arch_generation": 7.2, "cuda_cores": 512, "tensor_cores": 64, "gpu_max_clock_mhz": 1377, "memory_gb": 32,
        "memory_bandwidth_gbps": 136.5, "cpu_cores": 8, "cpu_max_clock_mhz": 2265}.items()))
    status = cli.main(["adapt", "--target", "new-board", "--metric", "latency", "--measurements",
                       str(_write_rows(given, project / "rows.csv")), "--sources", "jetson-nano,jetson-tx2",
                       "--hardware", str(hardware_file), "--json"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rows"] == 30 and result["sources"] == ["jetson-nano", "jetson-tx2"] and result["version"] == "1"
    assert (project / "conf/target/new-board.yaml").exists()
    predictor = perfpred.load_predictor("new-board", "latency")
    measured = left_out["latency_ms"].to_numpy()
    predicted = predictor.predict(left_out)
    low, high = predictor.predict_interval(left_out, level=0.9)
    assert np.all((low < predicted) & (predicted < high))
    adapted_mape = 100 * np.mean(np.abs(predicted - measured) / measured)
    zero_shot = predictor.estimator.__class__(predictor.estimator.source_model, predictor.estimator.descriptor).fit(None)
    zero_shot_mape = 100 * np.mean(np.abs(zero_shot.predict(left_out[predictor.features]) - measured) / measured)
    assert adapted_mape < zero_shot_mape  # 30 rows of the board teach more than its data sheet
    assert adapted_mape < 30
    covered = np.mean((measured >= low) & (measured <= high))
    assert covered > 0.6  # calibrated on 30 out-of-fold rows: coarse, but it must hold for most rows it never saw


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.drop(columns=["flops"]), r"columns \['flops'\] are missing"),
    (lambda t: t.head(2), "2 rows have a latency_ms value; adapt needs at least 3"),
    (lambda t: t.assign(latency_ms=-t["latency_ms"]), "latency_ms must be > 0"),
])
def test_a_bad_measurements_file_is_one_line_naming_it(project, board_tables, capsys, edit, message):
    from perfpred import cli

    path = _write_rows(edit(board_tables["jetson-nano"].head(10)), project / "bad-rows.csv")
    status = cli.main(["adapt", "--target", "jetson-orin-nano", "--metric", "latency", "--measurements", str(path)])
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert str(path) in error and pd.Series([error]).str.contains(message).all(), error


def test_an_unknown_target_without_hardware_says_what_to_give(project, board_tables, capsys):
    from perfpred import cli

    path = _write_rows(board_tables["jetson-nano"].head(10), project / "rows.csv")
    assert cli.main(["adapt", "--target", "mystery", "--metric", "latency", "--measurements", str(path)]) == 2
    assert "unknown target 'mystery': give its specifications with --hardware" in capsys.readouterr().err


def test_select_picks_networks_more_typical_than_random_picks(board_tables):
    from perfpred.model import select

    table = board_tables["jetson-tx2"]
    space = select.selection_space(table)
    chosen = select.k_medoids(table, 12)
    assert len(set(chosen)) == 12 and chosen == select.k_medoids(table, 12)
    assert chosen != select.k_medoids(table, 12, seed=1)  # the seed draws other clusters (the benchmark's draws)

    def spread(rows) -> float:  # how far, on average, a network is from its nearest chosen one
        return float(np.mean(np.min(np.linalg.norm(space[:, None, :] - space[None, rows, :], axis=2), axis=1)))

    random_spreads = [spread(np.random.default_rng(seed).choice(len(table), 12, replace=False)) for seed in range(20)]
    assert spread(chosen) < min(random_spreads)
    with pytest.raises(ValueError, match="more than the"):
        select.k_medoids(table, len(table) + 1)


def test_select_gives_distinct_rows_when_candidates_repeat(board_tables):
    from perfpred.model import select

    table = board_tables["jetson-tx2"].head(8)
    doubled = pd.concat([table, table, table], ignore_index=True)  # each network three times: clusters of equal rows
    chosen = select.k_medoids(doubled, 20)
    assert len(chosen) == 20 and len(set(chosen)) == 20


def test_select_places_networks_by_what_the_sources_measure_too(board_tables):
    from perfpred.model import select

    table = board_tables["jetson-tx2"].head(60)
    twice = pd.concat([table, table], ignore_index=True)  # the same features twice: only the sources tell them apart
    rng = np.random.default_rng(0)
    sources = np.vstack([np.full((60, 2), 1.0), np.full((60, 2), 6.0)]) + rng.normal(0, 0.01, (120, 2))
    space = select.selection_space(twice, sources)
    features_only = select.selection_space(twice)
    assert space.shape == (120, features_only.shape[1] + 3)
    assert np.allclose(np.square(space[:, features_only.shape[1]:]).sum(axis=1).mean(), features_only.shape[1], rtol=0.05)
    for seed in range(3):
        chosen = select.k_medoids(twice, 2, seed=seed, source_logs=sources)
        assert {row // 60 for row in chosen} == {0, 1}  # one network of each copy: the source block splits them


def test_select_command_proposes_models_not_yet_measured(project, board_tables, capsys):
    from perfpred import cli
    from perfpred.data import measurements

    candidates = board_tables["jetson-nano"]
    path = project / "candidates.parquet"
    candidates.to_parquet(path)
    already = candidates.iloc[::2]  # half of the candidates measured on the target already
    measurements.write_table(already, project / "data/measurements/jetson-tx2.parquet")
    assert cli.main(["select", "--target", "jetson-tx2", "-k", "5", "--candidates", str(path), "--json"]) == 0
    picked = json.loads(capsys.readouterr().out)
    measured = set(zip(already["model"], already["input_width"], strict=True))
    assert len(picked) == 5 and not {(p["model"], p["input_width"]) for p in picked} & measured
    assert [p["order"] for p in picked] == [1, 2, 3, 4, 5]


def test_adapt_bends_the_map_where_a_saturating_metric_reaches_its_cap(board_tables, monkeypatch):
    from perfpred.model import hardware, transfer

    features = ["input_size", "params", "flops", "layers", "activations"]
    sources = {name: board_tables[name] for name in ("jetson-nano", "jetson-agx-xavier")}
    source_model = transfer.fit_sources(list(sources), "latency", features, tables=sources)
    monkeypatch.setattr(transfer, "ADDITIVE_METRICS", ())  # the log-space map alone: what the hinges bend
    board = board_tables["jetson-tx2"]
    cap = float(np.quantile(board["latency_ms"], 0.5))
    capped = np.minimum(board["latency_ms"].to_numpy(), cap)  # a board that never exceeds its cap (a power mode)
    given = np.random.default_rng(0).choice(len(board), 40, replace=False)
    rest = np.setdiff1d(np.arange(len(board)), given)

    def mape(saturating: tuple[str, ...], rows: int = 40) -> tuple[float, object]:
        monkeypatch.setattr(transfer, "SATURATING_METRICS", saturating)
        adapted = transfer.AdaptedRegressor(source_model, hardware.descriptor("jetson-tx2"), use_residuals=False)
        adapted.fit(board.iloc[given[:rows]][features], capped[given[:rows]])
        predicted = adapted.predict(board.iloc[rest][features])
        return 100 * float(np.mean(np.abs(predicted - capped[rest]) / capped[rest])), adapted

    bent, adapted = mape(("latency",))
    straight, plain = mape(())
    assert adapted.knots_ is not None and plain.knots_ is None
    assert bent < 0.8 * straight
    assert mape(("latency",), rows=5)[1].knots_ is None  # too few rows to fit a bend: the straight map


def test_adapt_mixes_the_sources_with_a_per_layer_cost_they_do_not_share(board_tables, monkeypatch):
    """A board that pays each layer a fixed cost besides what the Nano takes (a slower kernel launch): no power
    law of the sources' predictions says that, the mixture in milliseconds does."""
    from perfpred.model import hardware, transfer

    features = ["input_size", "params", "flops", "layers", "activations"]
    sources = {name: board_tables[name] for name in ("jetson-nano", "jetson-agx-xavier")}
    source_model = transfer.fit_sources(list(sources), "latency", features, tables=sources)
    board = board_tables["jetson-tx2"]
    nano = source_model.predict_as(board[features], "jetson-nano")
    launched = 0.5 * nano + 0.4 * board["layers"].to_numpy("float64")  # 0.4 ms a layer
    given = np.random.default_rng(0).choice(len(board), 30, replace=False)
    rest = np.setdiff1d(np.arange(len(board)), given)

    def fitted(additive: tuple[str, ...], rows: int = 30):
        monkeypatch.setattr(transfer, "ADDITIVE_METRICS", additive)
        adapted = transfer.AdaptedRegressor(source_model, hardware.descriptor("jetson-tx2"), use_residuals=False)
        return adapted.fit(board.iloc[given[:rows]][features], launched[given[:rows]])

    def mape(adapted) -> float:
        predicted = adapted.predict(board.iloc[rest][features])
        return 100 * float(np.mean(np.abs(predicted - launched[rest]) / launched[rest]))

    mixed, plain = fitted(("latency",)), fitted(())
    assert mixed.mix_ is not None and plain.mix_ is None
    coefficients = dict(zip([*source_model.targets_, *transfer.MIX_TERMS, "constant"], mixed.mix_["coefficients"], strict=True))
    assert coefficients["jetson-nano"] == pytest.approx(0.5, rel=0.05) and coefficients["layers"] == pytest.approx(0.4, rel=0.05)
    assert mape(mixed) < 0.6 * mape(plain)
    assert fitted(("latency",), rows=5).mix_ is None  # too few rows for six coefficients: the log-space map alone


def test_pooled_svr_learns_a_family_the_board_never_measured_from_the_other_boards(project, board_tables):
    """A family the Nano's table lacks: the pooled SVR, taught by the boards that measured it, beats svr on the
    Nano's rows alone; each board keeps its own level; a split's held-out networks are in no source."""
    from perfpred.data import measurements
    from perfpred.model import estimators, pooled, sweep

    nano = board_tables["jetson-nano"]
    features = [c for c in nano.columns if c in pooled.schema.FEATURE_COLUMNS and nano[c].notna().all()]
    families = nano["family"].value_counts()
    errors = {}
    for family in [f for f in families.index if f != "basic_model" and families[f] >= 5][:4]:
        missing = nano["family"] == family
        measurements.write_table(nano[~missing], project / "data/measurements/jetson-nano.parquet")
        pooled._table.cache_clear()
        own = nano[~missing]
        estimator = pooled.PooledSVR(target="jetson-nano", metric="latency", baseline=["flops", "activations"])
        assert estimator.default_sources() == ["jetson-agx-xavier", "jetson-tx2"]  # the same kind of device
        estimator.fit(own[features], own["latency_ms"])
        alone = estimators.BaselineRatioRegressor(estimators.regression_pipeline(pooled_svr_regressor()),
                                                  ["flops", "activations"]).fit(own[features], own["latency_ms"])
        measured = nano.loc[missing, "latency_ms"].to_numpy()
        errors[family] = (sweep.mape_pct(measured, estimator.predict(nano.loc[missing, features])),
                          sweep.mape_pct(measured, alone.predict(nano.loc[missing, features])))
    assert np.mean([p for p, _ in errors.values()]) < 0.8 * np.mean([a for _, a in errors.values()]), errors
    # a split's held-out networks (here: 30 rows of the full table) reach the fit through no source
    measurements.write_table(nano, project / "data/measurements/jetson-nano.parquet")
    pooled._table.cache_clear()
    train_rows = nano.sample(len(nano) - 30, random_state=0)
    estimator = pooled.PooledSVR(target="jetson-nano", metric="latency").fit(train_rows[features], train_rows["latency_ms"])
    held_keys = set(pooled.network_keys(nano.drop(train_rows.index)[features]))
    assert not any(set(pooled.network_keys(f)) & held_keys for _, f, _ in estimator.source_rows(train_rows[features]))
    assert estimator.borrowed_rows_ > 0
    # each board keeps its level: the same networks are predicted slower on the Nano than on the AGX Xavier
    agx_table = board_tables["jetson-agx-xavier"]
    agx = pooled.PooledSVR(target="jetson-agx-xavier", metric="latency").fit(agx_table[features], agx_table["latency_ms"])
    assert np.median(estimator.predict(nano[features]) / agx.predict(nano[features])) > 2


def pooled_svr_regressor():
    from sklearn.svm import SVR

    return SVR(C=10.0, epsilon=0.02, tol=0.01)


def test_pooled_svr_refuses_a_floor_outside_zero_to_one(project, board_tables):
    from perfpred.model import pooled

    nano = board_tables["jetson-nano"]
    with pytest.raises(ValueError, match=r"target_offset must be in \[0, 1\)"):
        pooled.PooledSVR(target="jetson-nano", target_offset=1.5).fit(nano[["flops", "params"]], nano["latency_ms"])


def test_a_train_run_fits_a_pooled_svr_once_for_its_own_job_and_an_ensemble_member(project, board_tables):
    """Inside a run (fitcache.scoped) a second fit of a wanted estimator on the same rows and parameters reads the first
    one's state and predicts the same; other rows fit anew, other parameters are not kept; the folder is gone after
    the run; outside one, no file."""
    from sklearn.base import clone
    from sklearn.ensemble import VotingRegressor
    from sklearn.linear_model import LinearRegression

    from perfpred.model import fitcache, pooled

    nano = board_tables["jetson-nano"]
    features = [c for c in nano.columns if c in pooled.schema.FEATURE_COLUMNS and nano[c].notna().all()]
    rows = nano.sample(len(nano) - 20, random_state=1)
    svr = pooled.PooledSVR(target="jetson-nano", metric="latency", baseline=["flops"])
    alone = clone(svr).fit(rows[features], rows["latency_ms"])
    with fitcache.scoped() as folder:
        fitcache.want(svr)  # as train.evaluate declares a member of the run's ensembles
        first = clone(svr).fit(rows[features], rows["latency_ms"])
        assert len(list(folder.glob("*.pkl"))) == 1
        member = VotingRegressor([("pooled_svr", clone(svr)), ("linear", LinearRegression())], weights=[1, 0])
        member.fit(rows[features], rows["latency_ms"])
        assert len(list(folder.glob("*.pkl"))) == 1  # the ensemble's member read the job's fit
        np.testing.assert_allclose(member.named_estimators_["pooled_svr"].predict(nano[features]),
                                   first.predict(nano[features]))
        clone(svr).set_params(C=3.0).fit(rows[features], rows["latency_ms"])  # not a wanted estimator: not kept
        assert len(list(folder.glob("*.pkl"))) == 1
        clone(svr).fit(rows[features].iloc[1:], rows["latency_ms"].iloc[1:])  # other rows: fitted and kept
        assert len(list(folder.glob("*.pkl"))) == 2
    assert not folder.exists() and fitcache.ENV not in os.environ
    np.testing.assert_allclose(first.predict(nano[features]), alone.predict(nano[features]))
    assert fitcache.key(svr, rows[features], rows["latency_ms"]) is None  # no run open: nothing is kept
