"""Real measurements of tiny Keras models with both toolchains, failed rows, and the resumable stage."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from perfpred import cli, config
from perfpred.measure import stage as measure

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]

#: A short schedule: these tests check what is measured and recorded, not how precisely.
QUICK = {"warmup": 2, "warmup_seconds": 0.0, "min_iterations": 10, "min_seconds": 0.0, "max_iterations": 60,
         "max_seconds": 1.0}


def tiny_descriptor(folder: Path, name: str, filters: int = 4, width: int = 24) -> Path:
    """A small CNN as a Keras 3 JSON descriptor."""
    import keras

    model = keras.Sequential([keras.Input((width, width, 3)), keras.layers.Conv2D(filters, 3, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(5)], name=name)
    path = folder / f"{name}.json"
    path.write_text(model.to_json())
    return path


def lambda_descriptor(folder: Path) -> Path:
    """A descriptor that carries code (a Lambda layer): it must never be built."""
    path = folder / "with_lambda.json"
    path.write_text(json.dumps({"class_name": "Sequential", "config": {"name": "with_lambda", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 8, 8, 3], "name": "in"}},
        {"class_name": "Lambda", "config": {"name": "evil", "function": "print('never')"}}]}}))
    return path


def local_setup(toolchain: str, **overrides) -> tuple[dict, dict]:
    params = config.load_params()
    target, settings = measure.target_settings(f"host-cpu-{toolchain}", params)
    return target, settings | QUICK | overrides


@pytest.mark.parametrize("toolchain", ["tf", "tflite"])
def test_a_tiny_model_is_measured_in_a_fresh_process(tmp_path, toolchain):
    target, settings = local_setup(toolchain)
    row = measure.measure_model("tiny", tiny_descriptor(tmp_path, "tiny"), 32, target, settings)
    assert row["status"] == "ok", row["reason"]
    assert row["input_width"] == 32  # rebuilt at the requested width
    assert 10 <= row["iterations"] <= 60 and len(row["times_ms"]) == row["iterations"]
    assert row["latency_ms"] == row["median_ms"] and row["min_ms"] <= row["latency_ms"] <= row["max_ms"]
    assert row["memory_mb"] > row["baseline_memory_mb"] * 0.9 > 50  # the framework is resident
    assert row["pattern"] in {"white_noise", "drift", "high_spikes", "low_spikes"}
    assert row["first_call_ms"] > 0 and row["import_s"] > 0.5  # a new interpreter imported TensorFlow
    assert row["swapped"] is False and row["peak_scope"] == "timed_run"
    assert row["cpu_cores"] >= 1 and row["tf_version"].startswith("2.")
    assert (row["tflite_bytes"] or 0) > 0 if toolchain == "tflite" else row["tflite_bytes"] is None


def test_cli_prints_one_json_row_with_the_fixed_schedule(tmp_path, capsys):
    descriptor = tiny_descriptor(tmp_path, "cli_model")
    code = cli.main(["measure", str(descriptor), "--target", "host-cpu-tf", "--schedule", "fixed", "--json"])
    row = json.loads(capsys.readouterr().out)
    assert code == 0 and row["status"] == "ok"
    assert (row["schedule"], row["iterations"], row["stop_reason"]) == ("fixed", 200, "fixed")
    assert {"target", "model", "input_width", "latency_ms", "memory_mb", "p99_ms", "cv", "pattern"} <= set(row)


def write_manifest(folder: Path, descriptors: dict[str, Path], input_width: int = 24) -> None:
    rows = [{"name": name, "family": "tiny", "input_width": input_width, "descriptor": str(path), "source": "test",
             "synthetic": True} for name, path in descriptors.items()]
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)


def stage_params(tmp_path: Path, **overrides) -> dict:
    params = copy.deepcopy(config.load_params())
    for key in ("zoo", "features", "measurements", "measure_runs"):
        params["paths"][key] = str(tmp_path / key)
    params["measure"] |= QUICK | overrides
    return params


def test_stage_records_failures_resumes_and_never_mixes_settings(tmp_path):
    (tmp_path / "zoo").mkdir()
    models = {"tiny_a": tiny_descriptor(tmp_path, "tiny_a"), "bad": lambda_descriptor(tmp_path)}
    write_manifest(tmp_path / "zoo", models)
    params = stage_params(tmp_path)

    first = measure.measure_zoo("host-cpu-tf", params, progress=False)
    table = pd.read_parquet(tmp_path / "measurements" / "host-cpu-tf.parquet")
    assert (first["measured"], first["skipped"], first["ok"], first["failed"]) == (2, 0, 1, 1)
    failed = table.set_index("model").loc["bad"]
    assert failed["status"] == "failed" and "Lambda" in failed["reason"] and pd.isna(failed["latency_ms"])
    assert set(table["source"]) == {"measured"} and "zoo_source" in table.columns
    journal = tmp_path / "measure_runs" / "host-cpu-tf" / "journal.jsonl"
    series = list((tmp_path / "measure_runs" / "host-cpu-tf" / "series").glob("tiny_a@24-*.json.gz"))
    assert len(series) == 1

    # interrupted while writing a row, then the zoo grew: only the new model is measured
    with open(journal, "a") as handle:
        handle.write('{"model": "torn", "requested_wi')
    models["tiny_b"] = tiny_descriptor(tmp_path, "tiny_b", filters=8)
    write_manifest(tmp_path / "zoo", models)
    second = measure.measure_zoo("host-cpu-tf", params, progress=False)
    assert (second["measured"], second["skipped"]) == (1, 2)
    rows = measure.read_journal(journal)
    assert sorted(r["model"] for r in rows) == ["bad", "tiny_a", "tiny_b"]  # nothing measured twice, torn line ignored

    # other settings: everything is measured again, and the table holds only the new settings' rows
    third = measure.measure_zoo("host-cpu-tf", stage_params(tmp_path, trim=0.1), progress=False)
    table = pd.read_parquet(tmp_path / "measurements" / "host-cpu-tf.parquet")
    assert third["measured"] == 3 and third["journal_rows_other_settings"] == 3
    assert table["settings_id"].nunique() == 1 and len(table) == 3


def test_models_timed_while_the_machine_probe_ran_slow_are_timed_again_once_and_keep_the_faster_machines_row(tmp_path):
    (tmp_path / "zoo").mkdir()
    write_manifest(tmp_path / "zoo", {f"tiny_{i}": tiny_descriptor(tmp_path, f"tiny_{i}", filters=4 + 4 * i)
                                      for i in range(3)})
    # a ratio under 1 finds every row slow (its probe above half the usual one): all three are timed again
    params = stage_params(tmp_path, retime_slow=0.5)
    first = measure.measure_zoo("host-cpu-tf", params, progress=False)
    assert (first["measured"], first["ok"], first["retimed"]) == (3, 3, 3) and first["probe_usual_us"] > 0
    journal = measure.read_journal(tmp_path / "measure_runs" / "host-cpu-tf" / "journal.jsonl")
    assert len(journal) == 6 and [r["timings"] for r in journal] == [1, 1, 1, 2, 2, 2]
    for model in ("tiny_0", "tiny_1", "tiny_2"):
        once, kept = [r for r in journal if r["model"] == model]
        assert 0 < measure.probe_of(kept) <= measure.probe_of(once)  # the row of the less busy machine is kept
        assert kept["retimed"] == (kept["series"] != once["series"])  # a new timing, or the first one journaled again
    assert first["retimed_kept"] == sum(r["retimed"] for r in journal[3:])
    table = pd.read_parquet(tmp_path / "measurements" / "host-cpu-tf.parquet").set_index("model")
    assert len(table) == 3 and (table["probe_us"] > 0).all() and (table["probe_after_us"] > 0).all()
    assert list(table["timings"]) == [2, 2, 2]
    # resumed: nothing is measured, and nothing is timed a third time
    again = measure.measure_zoo("host-cpu-tf", params, progress=False)
    assert (again["measured"], again["retimed"], again["skipped"]) == (0, 0, 3)


def test_slow_rows_are_those_whose_probe_exceeds_the_ratio_times_the_lower_quartile():
    rows = [{"status": "ok", "probe_us": 10.0, "probe_after_us": 10.0}, {"status": "ok", "probe_us": 10.5},
            {"status": "ok", "probe_us": 9.0, "probe_after_us": 12.0},  # slow after its run: the slower probe counts
            {"status": "failed", "probe_us": 30.0}, {"status": "ok", "probe_us": None}]
    slow, typical = measure.slow_rows(rows, 1.1)
    assert typical == 10.25 and slow == [rows[2]]  # the lower quartile of 10, 10.5 and 12
    assert measure.slow_rows(rows[:2], 1.1) == ([], None)  # two probed rows: too few to know the usual speed
    # against a reference (the target table's usual probe): a few rows measured apart, all on a slow machine
    assert measure.slow_rows(rows[:2], 1.1, typical=9.0) == (rows[:2], 9.0)
    assert measure.probe_of({"probe_us": float("nan")}) is None


def test_a_worker_past_its_timeout_is_a_failed_row_and_the_next_model_still_runs(tmp_path):
    from perfpred.measure import runners

    target, settings = local_setup("tf", min_seconds=30.0, max_seconds=60.0, max_iterations=10**6, timeout_s=3)
    descriptor = tiny_descriptor(tmp_path, "slow")
    with runners.ForkServer() as server:
        row = measure.measure_model("slow", descriptor, None, target, settings, server)
        assert row["status"] == "failed" and row["reason"].startswith("timeout")
        row = measure.measure_model("slow", descriptor, None, target, settings | QUICK | {"timeout_s": 60}, server)
        assert row["status"] == "ok"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pipelining needs a CPU to prepare on besides the timing one")
def test_pipelined_workers_prepare_on_other_cpus_and_never_time_at_once(tmp_path):
    (tmp_path / "zoo").mkdir()
    models = {f"tiny_{i}": tiny_descriptor(tmp_path, f"tiny_{i}", filters=4 + 4 * i) for i in range(4)}
    write_manifest(tmp_path / "zoo", models)
    timing_cpu = sorted(os.sched_getaffinity(0))[0]
    params = stage_params(tmp_path, cpu_affinity=[timing_cpu], prepare_cpus=None, parallel=3)
    summary = measure.measure_zoo("host-cpu-tflite", params, progress=False)
    assert summary["parallel"] == 3 and summary["ok"] == 4
    rows = measure.read_journal(tmp_path / "measure_runs" / "host-cpu-tflite" / "journal.jsonl")
    assert {r["cpu_affinity"] for r in rows} == {str(timing_cpu)}
    assert all(str(timing_cpu) not in r["prepare_cpus"].split(",") for r in rows)
    windows = sorted(r["timed_window_s"] for r in rows)
    assert all(earlier[1] <= later[0] for earlier, later in zip(windows, windows[1:], strict=False))  # one at a time
    # pipelined: some worker was already alive (preparing) when another one's timed run began
    alive = [(r["timed_window_s"][1] - r["wall_s"], r["timed_window_s"][0]) for r in rows]
    assert any(born < timed[0] < own_turn for born, own_turn in alive for timed in windows if timed[0] != own_turn)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a timing CPU and another one")
def test_a_worker_moved_off_the_timing_cpu_at_birth_still_times_on_it(tmp_path):
    """The race behind a flaky CI run: the turn's holder moved a newborn worker to the preparation CPUs
    before it read its own CPUs, so it took them for all it was allowed and timed there."""
    import subprocess
    import sys

    from perfpred.measure import agent

    cpus = sorted(os.sched_getaffinity(0))
    target, settings = local_setup("tflite", cpu_affinity=[cpus[0]], prepare_cpus=None)
    work = measure.job("tiny", tiny_descriptor(tmp_path, "tiny"), None, target, settings) | {"allowed_cpus": cpus}
    moved = subprocess.run([sys.executable, "-m", "perfpred.measure.agent", "-"], input=json.dumps(work), text=True,
                           capture_output=True, check=True, preexec_fn=lambda: os.sched_setaffinity(0, cpus[1:]))
    row = json.loads(moved.stdout.split(agent.RESULT_MARKER)[-1])
    assert row["status"] == "ok", row["reason"]
    assert row["cpu_affinity"] == str(cpus[0]) and str(cpus[0]) not in row["prepare_cpus"].split(",")


def test_a_tflite_conversion_that_does_not_compute_the_model_is_refused(tmp_path):
    from perfpred.measure import agent

    descriptor = json.loads(tiny_descriptor(tmp_path, "checked").read_text())
    flatbuffer, built = agent.convert_tflite(descriptor, {"seed": 0})
    assert built["tflite_bytes"] > 4 * (3 * 3 * 3 * 4)  # the weights are frozen into the flatbuffer
    agent.tflite_callable(flatbuffer, 1, built["inputs"], built["expected_output"])()  # matches the Keras output
    with pytest.raises(RuntimeError, match="does not compute the Keras model"):
        agent.tflite_callable(flatbuffer, 1, built["inputs"], built["expected_output"] + 1.0)


def test_the_tflite_conversion_without_the_rebuilt_function_writes_the_same_flatbuffer(tmp_path, monkeypatch):
    """Freezing without rebuilding a ConcreteFunction (agent._freezing_without_rebuild) changes nothing in what
    the converter writes, with captured constants (a Normalization layer's mean and variance, EfficientNet's stem)
    among the function's inputs."""
    import contextlib

    import keras
    import numpy as np

    from perfpred.measure import agent

    normalization = keras.layers.Normalization(mean=np.arange(3.0), variance=np.arange(1.0, 4.0))
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255), normalization,
                              keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(), keras.layers.ReLU(),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)], name="normalized")
    descriptor = json.loads(model.to_json())
    ours, built = agent.convert_tflite(descriptor, {"seed": 0})
    agent.tflite_callable(ours, 1, built["inputs"], built["expected_output"])()  # computes the Keras model
    monkeypatch.setattr(agent, "_freezing_without_rebuild", contextlib.nullcontext)
    stock, _ = agent.convert_tflite(descriptor, {"seed": 0})
    assert ours == stock


def local_project(root: Path, models: dict[str, Path], input_width: int = 24) -> dict:
    """A project folder (params.yaml with the QUICK schedule, a zoo manifest) for `perfpred measure --zoo`."""
    import yaml

    params = stage_params(root)
    (root / "zoo").mkdir(exist_ok=True)
    write_manifest(root / "zoo", models, input_width)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "conf").symlink_to(config.conf_dir(), target_is_directory=True)  # the stage's summary reads conf/measure
    return params


def test_measuring_one_model_warns_when_the_machine_runs_slower_than_when_the_table_was_measured(
        tmp_path, monkeypatch, capsys):
    descriptor = tiny_descriptor(tmp_path, "one")
    params = local_project(tmp_path, {"one": descriptor})
    monkeypatch.setenv("PERFPRED_ROOT", str(tmp_path))
    summary = Path(params["paths"]["measurements"]) / "host-cpu-tf.measure.json"
    summary.parent.mkdir(parents=True)
    for typical, warned in ((1e6, False), (1e-3, True)):  # a table measured on a far slower / faster machine
        summary.write_text(json.dumps({"probe_usual_us": typical}))
        assert cli.main(["measure", str(descriptor), "--target", "host-cpu-tf", "--json"]) == 0
        captured = capsys.readouterr()
        assert json.loads(captured.out)["probe_us"] > 0
        assert ("slower than when host-cpu-tf's table was measured" in captured.err) == warned


def test_failed_rows_are_measured_again_with_retry_failed_and_all_failed_exits_non_zero(tmp_path, monkeypatch, capsys):
    descriptor = lambda_descriptor(tmp_path)
    local_project(tmp_path, {"fixable": descriptor})
    monkeypatch.setenv("PERFPRED_ROOT", str(tmp_path))
    journal = tmp_path / "measure_runs" / "host-cpu-tf" / "journal.jsonl"

    assert cli.main(["measure", "--zoo", "--target", "host-cpu-tf"]) == 1  # every model failed
    assert "every model failed" in capsys.readouterr().err
    assert cli.main(["measure", "--zoo", "--target", "host-cpu-tf"]) == 1  # resumed: still no ok row
    out = capsys.readouterr().out
    assert "skipped 1" in out and "nan" not in out
    assert [r["status"] for r in measure.read_journal(journal)] == ["failed"]

    descriptor.write_text(tiny_descriptor(tmp_path / "zoo", "fixable").read_text())  # the user fixes the model
    assert cli.main(["measure", "--zoo", "--target", "host-cpu-tf"]) == 1  # a failed row is final without the flag
    assert cli.main(["measure", "--zoo", "--target", "host-cpu-tf", "--retry-failed"]) == 0
    out = capsys.readouterr().out
    assert "measured 1" in out and "1 ok, 0 failed" in out and "overhead" in out and "nan" not in out
    rows = measure.read_journal(journal)
    assert [r["status"] for r in rows] == ["failed", "ok"] and rows[0]["failure"] == "model"
    table = pd.read_parquet(tmp_path / "measurements" / "host-cpu-tf.parquet")
    assert list(table["status"]) == ["ok"]  # the new row replaced the failed one


def test_mean_overhead_is_none_without_an_ok_row_measured_now():
    assert measure.mean_overhead_s([]) is None
    assert measure.mean_overhead_s([{"status": "failed", "overhead_s": None},
                                    {"status": "ok", "overhead_s": float("nan")}]) is None
    assert measure.mean_overhead_s([{"status": "ok", "overhead_s": 2.0}, {"status": "ok", "overhead_s": 4.0}]) == 3.0


def test_an_architecture_name_with_an_input_size_finds_its_zoo_descriptor(tmp_path):
    (tmp_path / "zoo").mkdir()
    descriptor = tmp_path / "v2.json"
    descriptor.write_text("{}")
    pd.DataFrame([{"name": name, "family": "MobileNetV2", "input_width": width, "descriptor": str(descriptor),
                   "source": "keras.applications", "synthetic": False}
                  for name, width in (("MobileNetV2-a1.0_96", 96), ("MobileNetV2-a1.0_160", 160))]
                 ).to_csv(tmp_path / "zoo" / "manifest.csv", index=False)
    params = stage_params(tmp_path)
    assert measure.resolve_model("MobileNetV2-1.0", params, 160) == ("MobileNetV2-a1.0_160", descriptor, 160)
    assert measure.resolve_model("MobileNetV2-1.0", params, 128) == ("MobileNetV2-1.0_128", descriptor, 128)
    assert measure.resolve_model("MobileNetV2-a1.0_96", params) == ("MobileNetV2-a1.0_96", descriptor, 96)
    with pytest.raises(ValueError) as error:
        measure.resolve_model("MobileNetV2-a1.0_128", params)
    message = str(error.value)
    assert message.startswith("MobileNetV2-a1.0_128 is neither") and "close zoo names: MobileNetV2-a1.0_" in message


def test_the_readme_measure_example_runs(tmp_path, monkeypatch, capsys):
    """docs/measuring.md's `perfpred measure MobileNetV2-1.0 ... --input-size 160` line, on a zoo whose
    MobileNetV2-a1.0_160 is a tiny stand-in (the real zoo is a pipeline output)."""
    readme = (config.PACKAGE_ROOT / "docs/measuring.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("perfpred measure MobileNetV2-1.0"))
    argv = line.split("#")[0].split()[1:]
    local_project(tmp_path, {"MobileNetV2-a1.0_160": tiny_descriptor(tmp_path, "stand_in", width=160)}, 160)
    monkeypatch.setenv("PERFPRED_ROOT", str(tmp_path))
    assert cli.main(argv) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["model"], row["input_width"], row["target"], row["status"]) == (
        "MobileNetV2-a1.0_160", 160, "host-cpu-tflite", "ok")


def test_the_process_tree_walk_survives_a_process_that_ends_during_it(monkeypatch):
    """A worker can exit between being listed as a child and its /proc entry being read: the walk keeps the rest."""
    import os
    import subprocess

    from perfpred.measure import agent

    child = subprocess.Popen(["sleep", "30"])
    try:
        assert child.pid in agent._process_tree(os.getpid())
        listdir = os.listdir

        def gone(path):  # the child's /proc entry vanishes as the walk reaches it
            if path == f"/proc/{child.pid}/task":
                raise FileNotFoundError(path)
            return listdir(path)

        monkeypatch.setattr(agent.os, "listdir", gone)
        tree = agent._process_tree(os.getpid())
        assert tree[0] == os.getpid() and child.pid in tree
    finally:
        child.kill()
        child.wait()
