"""`perfpred predict`: output formats (pure) and MODEL resolution without TensorFlow."""

import json
import math
import re
import subprocess
import sys

import pandas as pd
import pytest

import trained_store
from perfpred import cli, config
from perfpred.serve import predict

DESCRIPTOR_PATH = trained_store.DESCRIPTOR
DESCRIPTOR = str(DESCRIPTOR_PATH)


def prediction_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "target": ["jetson-nano", "jetson-tx2"],
            "toolchain": ["tensorflow-1.x", "tensorflow-1.x"],
            "latency_ms": [81.234, 40.0],
            "latency_ms_low": [70.0, 35.0],
            "latency_ms_high": [95.5, 46.0],
            "memory_mb": [410.0, math.nan],
            "memory_mb_low": [380.0, math.nan],
            "memory_mb_high": [450.0, math.nan],
            "latency_predictor": ["xgboost v3", "random_forest v1"],
            "memory_predictor": ["ridge v2", math.nan],
        }
    )


def test_table_shows_values_with_intervals_and_predictors():
    lines = predict.format_table(prediction_table()).splitlines()
    assert lines[0].split() == ["target", "toolchain", "latency_ms", "memory_mb", "predictors"]
    assert "81.23 [70, 95.5]" in lines[1] and "410 [380, 450]" in lines[1]
    assert "latency: xgboost v3  memory: ridge v2" in lines[1]
    assert "-" in lines[2].split() and "memory:" not in lines[2]


def test_json_records_use_null_for_missing_values():
    records = predict.json_records(prediction_table())
    assert records[0]["latency_ms_high"] == 95.5
    assert records[1]["memory_mb"] is None and records[1]["memory_predictor"] is None


def test_json_descriptor_is_described():
    features = predict.describe_model(DESCRIPTOR)
    assert features["input_width"] == 224 and features["params"] == 25_636_712
    assert predict.describe_model(DESCRIPTOR, 160)["input_size"] == 160 * 160 * 3


def test_describing_a_json_descriptor_imports_no_tensorflow():
    # A fresh interpreter: another test of this session may have imported TensorFlow already.
    probe = (
        "import sys; from perfpred.serve import predict; predict.describe_model(sys.argv[1]); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules))"
    )
    completed = subprocess.run([sys.executable, "-c", probe, DESCRIPTOR], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"


# ---- end to end: real predictors trained into a temporary MLflow store by `perfpred train` ----


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Two Jetson targets trained on 40% of their rows (latency and memory); the other rows held out."""
    folder = tmp_path_factory.mktemp("project")
    held_out = trained_store.make_project(folder, {"jetson-nano": "nano", "jetson-tx2": "tx2"}, train_fraction=0.4)
    trained_store.train(folder, ["jetson-nano", "jetson-tx2"], ["latency", "memory"])
    return folder, held_out


@pytest.fixture
def in_project(project, monkeypatch):
    """Run perfpred in-process inside the trained project."""
    folder, _ = project
    for key, value in trained_store.environment(folder).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(folder)
    return folder


@pytest.mark.slow
def test_predict_json_covers_every_target_without_tensorflow(project):
    folder, _ = project
    completed = trained_store.perfpred(folder, "predict", str(DESCRIPTOR_PATH), "--json", python_options=("-X", "importtime"))
    imported = {line.rsplit("|", 1)[-1].strip() for line in completed.stderr.splitlines() if "|" in line}
    assert not {"tensorflow", "keras"} & imported
    records = json.loads(completed.stdout)
    assert [r["target"] for r in records] == ["jetson-nano", "jetson-tx2"]
    for record in records:
        assert record["toolchain"] == "tensorflow-1.x" and record["latency_predictor"] == "poly v1"
        for column in ("latency_ms", "memory_mb"):
            assert 0 < record[f"{column}_low"] < record[column] < record[f"{column}_high"]
        assert record.get("power_mw") is None  # no power predictor was trained


@pytest.mark.slow
def test_cli_answers_agree_with_the_registered_predictors(project):
    folder, _ = project
    first = json.loads(trained_store.perfpred(folder, "predict", str(DESCRIPTOR_PATH), "--json").stdout)
    assert list((folder / ".cache").glob("jetson-nano-latency-v1-*.pickle"))  # loaded through MLflow once, then kept
    from perfpred.serve import loader, registry

    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    champions = registry.champions(uri)
    assert sorted((c.target, c.metric) for c in champions.values()) == [
        (t, m) for t in ("jetson-nano", "jetson-tx2") for m in ("latency", "memory")]
    assert {c.version for c in champions.values()} == {"1"}
    predictor = loader.load_predictor("jetson-tx2", "latency", tracking_uri=uri)
    features = pd.DataFrame([predict.describe_model(DESCRIPTOR_PATH)])
    assert first[1]["latency_ms"] == pytest.approx(predictor.predict(features)[0], rel=1e-12)
    # The next call reads the predictors from the cache: same answers, at the level asked for.
    cached = trained_store.perfpred(folder, "predict", str(DESCRIPTOR_PATH), "--json", "--level", "0.8", "--target", "jetson-tx2")
    (narrow,) = json.loads(cached.stdout)
    low, high = predictor.predict_interval(features, level=0.8)
    assert narrow["latency_ms"] == first[1]["latency_ms"]
    assert [narrow["latency_ms_low"], narrow["latency_ms_high"]] == pytest.approx([low[0], high[0]], rel=1e-12)
    assert first[1]["latency_ms_low"] < narrow["latency_ms_low"] < narrow["latency_ms_high"] < first[1]["latency_ms_high"]


@pytest.mark.slow
def test_intervals_cover_held_out_rows_at_their_level(project, in_project):
    _, held_out = project
    for target in ("jetson-nano", "jetson-tx2"):
        rows = held_out[target][held_out[target]["latency_ms"].notna()]
        answers = predict.predict_features(rows, targets=[target], level=0.9)
        inside = (answers["latency_ms_low"] <= rows["latency_ms"].to_numpy()) & (rows["latency_ms"].to_numpy() <= answers["latency_ms_high"])
        assert len(rows) > 500 and abs(inside.mean() - 0.9) <= 0.05, (target, inside.mean())


@pytest.mark.slow
def test_table_names_targets_and_champions(in_project, capsys):
    assert cli.main(["predict", str(DESCRIPTOR_PATH)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["target", "toolchain", "latency_ms", "memory_mb", "predictors", "in", "training", "domain"]
    # the latency rows hold this architecture (random splits' intervals, no mark); the few memory rows do not
    assert lines[1].startswith("jetson-nano  tensorflow-1.x")
    assert "latency: poly v1  memory: poly v1 (intervals: families)  " in lines[1]
    assert re.search(r"memory: poly v1 \(intervals: families\)  (yes|NO \(outside: [a-z_, ]+\))$", lines[1])  # domain


@pytest.mark.slow
def test_a_model_beyond_the_training_rows_is_marked_and_its_interval_widened(in_project, capsys):
    inside = predict.predict_model(DESCRIPTOR_PATH, targets=["jetson-nano"])
    beyond = predict.predict_model(DESCRIPTOR_PATH, input_width=4096, targets=["jetson-nano"])  # 2.4x the most FLOPs measured
    # Within the training rows' FLOPs (it may still be far from the 40 % of rows this store was trained on).
    assert "flops" not in inside["outside"][0] and inside["in_domain"][0] == (inside["outside"][0] == [])
    assert not beyond["in_domain"][0] and "flops" in beyond["outside"][0]

    def spread(table):
        return table["latency_ms_high"][0] / table["latency_ms_low"][0]

    assert spread(beyond) > spread(inside)
    assert cli.main(["predict", DESCRIPTOR, "--input-size", "4096", "--target", "jetson-nano"]) == 0
    text = capsys.readouterr().out
    assert "NO (outside: " in text and "flops" in text.splitlines()[1] and predict.OUTSIDE_NOTE in text
    assert cli.main(["predict", DESCRIPTOR, "--input-size", "4096", "--target", "jetson-nano", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["in_domain"] is False and "flops" in record["outside"]


@pytest.mark.slow
def test_intervals_calibrated_on_families_never_seen_on_request(in_project, capsys):
    """`--calibration families`: the intervals that leave-family-out calibrated, for an architecture of one's own."""
    from perfpred.serve import loader

    assert cli.main(["predict", DESCRIPTOR, "--target", "jetson-nano", "--json"]) == 0
    (plain,) = json.loads(capsys.readouterr().out)
    assert cli.main(["predict", DESCRIPTOR, "--target", "jetson-nano", "--json", "--calibration", "families"]) == 0
    (families,) = json.loads(capsys.readouterr().out)
    predictor = loader.load_predictor("jetson-nano", "latency")
    low, high = predictor.predict_interval(pd.DataFrame([predict.describe_model(DESCRIPTOR_PATH)]), 0.9, domain="families")
    assert families["latency_ms"] == plain["latency_ms"]
    assert [families["latency_ms_low"], families["latency_ms_high"]] == pytest.approx([low[0], high[0]], rel=1e-12)
    assert families["latency_ms_high"] / families["latency_ms_low"] > plain["latency_ms_high"] / plain["latency_ms_low"]


def test_an_unreachable_tracking_server_fails_fast_with_one_line(tmp_path):
    import time

    (tmp_path / "conf").symlink_to(trained_store.REPO / "conf")
    started = time.monotonic()
    completed = trained_store.perfpred(tmp_path, "predict", DESCRIPTOR, "--tracking-uri", "http://127.0.0.1:9", check=False)
    elapsed_s = time.monotonic() - started
    assert completed.returncode == 2 and completed.stdout == ""
    (line,) = completed.stderr.strip().splitlines()
    assert "http://127.0.0.1:9" in line and "check that the server runs" in line and "Traceback" not in line
    assert elapsed_s < 30  # an upper bound only: MLflow's own retries took minutes


@pytest.mark.slow
def test_errors_say_what_to_do(in_project, capsys, tmp_path):
    assert cli.main(["predict", str(DESCRIPTOR_PATH), "--target", "jetson-orin-nx"]) == 2
    known = ", ".join(config.group_options("target"))
    assert f"unknown target 'jetson-orin-nx': known targets are {known}" in capsys.readouterr().err
    assert cli.main(["predict", str(DESCRIPTOR_PATH), "--target", "jetson-agx-xavier"]) == 2
    assert "has no champion predictor yet" in (error := capsys.readouterr().err)
    assert "perfpred train -m target=jetson-agx-xavier metric=latency,memory,power" in error
    inception = DESCRIPTOR_PATH.with_name("Inception-v3_224.json")
    assert cli.main(["predict", str(inception), "--input-size", "32"]) == 2
    assert "input size is too small for this architecture" in capsys.readouterr().err
    descriptor = json.loads(DESCRIPTOR_PATH.read_text())
    descriptor["config"]["layers"][2]["class_name"] = "FancyConv2D"
    unsupported = tmp_path / "fancy.json"
    unsupported.write_text(json.dumps(descriptor))
    assert cli.main(["predict", str(unsupported)]) == 2
    assert "FancyConv2D" in capsys.readouterr().err


@pytest.mark.slow
def test_recommend_ranks_the_targets_that_meet_the_limits(project, in_project, capsys):
    folder, _ = project
    records = predict.predict_model(DESCRIPTOR_PATH)
    latency = dict(zip(records["target"], records["latency_ms"], strict=True))
    faster, slower = sorted(latency, key=latency.get)
    limit_ms = f"{(latency[faster] * latency[slower]) ** 0.5:.3f}"  # between the two predictions
    completed = trained_store.perfpred(folder, "recommend", DESCRIPTOR, "--max-latency-ms", limit_ms, "--max-memory-mb", "100000", "--json")
    ranked = json.loads(completed.stdout)
    assert [r["target"] for r in ranked] == [faster, slower]
    assert ranked[0]["rank"] == 1 and ranked[0]["meets"] and ranked[0]["verdict"] in ("meets", "meets?")
    assert not ranked[1]["meets"] and ranked[1]["rank"] is None and "latency_ms" in ranked[1]["reasons"]
    assert "memory_mb" not in ranked[1]["reasons"]
    assert cli.main(["recommend", DESCRIPTOR, "--max-latency-ms", limit_ms]) == 0
    text = capsys.readouterr().out
    assert text.index(faster) < text.index(f"{slower} (tensorflow-1.x): fail")


@pytest.mark.slow
@pytest.mark.tensorflow
def test_keras_application_by_name(in_project, capsys):
    assert cli.main(["predict", "app:MobileNetV2", "--input-size", "96", "--target", "jetson-nano", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["model"] == "app:MobileNetV2" and record["input_width"] == 96 and record["latency_ms"] > 0
    assert cli.main(["predict", "app:MobileNetV2", "--input-size", "16"]) == 2
    assert "too small for MobileNetV2: it needs at least 32x32" in capsys.readouterr().err
