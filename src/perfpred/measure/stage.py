"""The `measure` stage and `perfpred measure`: latency and peak memory of zoo models on local or SSH targets."""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from perfpred import config
from perfpred.data import measurements, schema
from perfpred.zoo import build as zoo

#: The schedule's settings, passed to the agent.
SCHEDULE_KEYS = ("kind", "warmup", "warmup_seconds", "iterations", "min_iterations", "min_seconds", "max_iterations",
                 "max_seconds", "target_rel_ci", "check_every")
#: Settings that change a figure: rows measured under different ones are never mixed.
SETTING_KEYS = SCHEDULE_KEYS + ("central", "trim", "threads", "cpu_affinity", "prepare_cpus", "parallel", "priority",
                                 "seed", "worker")
#: Result fields copied into a row (the statistics, memory, overhead and environment).
ROW_FIELDS = ("status", "reason", "latency_ms", "memory_mb", "mean_ms", "median_ms", "min_ms", "max_ms", "std_ms",
              "p90_ms", "p99_ms", "trimmed_mean_ms", "iterations", "cv", "median_ci_rel", "pattern", "high_spikes",
              "low_spikes", "drift_rho", "stop_reason", "first_call_ms", "baseline_memory_mb", "build_peak_memory_mb",
              "host_memory_mb", "peak_scope", "swapped", "process_swap_kb", "wall_s", "import_s", "build_s",
              "convert_s", "warmup_runs", "warmup_s", "timed_s", "overhead_s", "tflite_bytes", "tf_version",
              "hostname", "cpu_model", "cpu_cores", "kernel", "python_version", "governor", "load_1m", "cpu_affinity",
              "prepare_cpus", "turn_wait_s", "timed_window_s", "priority", "autogroup_nice")
ROW_FIELDS += ("onnx_bytes", "onnxruntime_version", "export_cached")  # host-cpu-onnxruntime (measure/onnx_runtime.py)


def target_settings(name: str, params: dict, schedule: str | None = None) -> tuple[dict, dict]:
    """A measured target's configuration and its measurement settings (conf/measure/ + the target's overrides)."""
    target = (params.get("local") or {}).get(name) or config.target_config(name)
    if target.get("kind") not in ("local", "ssh"):
        raise config.ConfigError(f"target {name!r} has kind {target.get('kind')!r}: measure a local or ssh target "
                                 f"(conf/target/ with kind: local or kind: ssh)")
    if schedule is None:
        settings = dict(params["measure"])
    else:
        from omegaconf import OmegaConf

        settings = OmegaConf.to_container(config.compose("config", [f"measure={schedule}"]).measure, resolve=True)
    settings |= target.get("measure") or {}
    if target.get("toolchain") == "onnxruntime":  # exports of zoo descriptors, kept beside the target's journal
        settings["onnx_cache"] = str(config.path("measure_runs", params) / name / "onnx")
    return target, settings


def settings_id(target: dict, settings: dict) -> str:
    """A short hash of everything that changes a figure: target toolchain and device, schedule, noise control."""
    from perfpred.measure.agent import AGENT_VERSION

    key = {"target": target["name"], "toolchain": target["toolchain"], "device": target.get("device", "cpu"),
           "agent_version": AGENT_VERSION}
    key |= {k: settings.get(k) for k in SETTING_KEYS}
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def job(model: str, descriptor: Path, input_width: int | None, target: dict, settings: dict) -> dict:
    """The agent's job for one model on one target."""
    schedule = {k: settings[k] for k in SCHEDULE_KEYS if k in settings}
    return {"model": model, "descriptor": str(descriptor), "input_width": input_width,
            "toolchain": target["toolchain"] if target["toolchain"] in ("tflite", "onnxruntime") else "tf",
            "device": target.get("device", "cpu"), "onnx_cache": settings.get("onnx_cache"),
            "threads": settings["threads"], "cpu_affinity": settings.get("cpu_affinity"),
            "prepare_cpus": settings.get("prepare_cpus"), "priority": settings.get("priority"), "schedule": schedule, "central": settings.get("central", "median"),
            "trim": settings.get("trim", 0.05), "seed": settings.get("seed", 0)}


def measure_model(model: str, descriptor: Path, input_width: int | None, target: dict, settings: dict,
                  server=None) -> dict:
    """Measure one model in a fresh worker and return its row (with the raw series under `times_ms`).

    `server` (a runners.ForkServer) forks the worker from a process that has imported the framework
    already; without one, a local worker is a new interpreter.
    """
    return next(measure_many([(model, descriptor, input_width)], target, settings, server))[1]


def to_row(result: dict, model: str, input_width: int | None, target: dict, settings: dict) -> dict:
    """The table row of an agent's result: identity, statistics, settings and the raw series."""
    if result.get("wall_s") is not None and result.get("timed_s") is not None:
        result["overhead_s"] = result["wall_s"] - result["timed_s"] - result.get("warmup_s", 0.0)
    row = {"target": target["name"], "model": model,
           "input_width": result.get("input_width", input_width if input_width is not None else -1)}
    row |= {field: result.get(field) for field in ROW_FIELDS}
    row |= {"toolchain": target["toolchain"], "device": target.get("device", "cpu"), "schedule": settings["kind"],
            "settings_id": settings_id(target, settings), "times_ms": result.get("times_ms", [])}
    return row


def parallel_workers(settings: dict) -> int:
    """Workers in flight for a zoo: `parallel` when CPUs outside the timing ones are left to prepare on, else 1."""
    from perfpred.measure.agent import preparation_cpus

    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    timing = set(settings.get("cpu_affinity") or allowed)
    prepare = preparation_cpus(settings.get("cpu_affinity"), settings.get("prepare_cpus"), allowed)
    return int(settings.get("parallel", 1)) if set(prepare) - timing else 1


def measure_many(entries: list, target: dict, settings: dict, server=None):
    """Measure (name, descriptor, width) entries; yield (entry, row) as each finishes, pipelined on a fork server."""
    timeout_s = float(settings["timeout_s"])
    jobs = [job(name, descriptor, width, target, settings) | {"entry": index}
            for index, (name, descriptor, width) in enumerate(entries)]
    if server is None:
        from perfpred.measure import runners

        results = ((j, runners.run(j, target, timeout_s)) for j in jobs)
    else:
        results = server.map(jobs, timeout_s)
    for sent, result in results:
        name, _, width = entries[sent["entry"]]
        yield entries[sent["entry"]], to_row(result, name, width, target, settings)


def row_key(model: str, input_width: int | None, sid: str) -> str:
    """The resume key: a model at an input width under one set of settings is measured once."""
    return f"{model}@{input_width}#{sid}"


# --- the journal: finished rows, appended one line at a time ------------------------------------------------

def read_journal(path: Path) -> list[dict]:
    """Rows of a journal; a torn line (a run killed while writing it) is ignored."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def append_journal(path: Path, row: dict) -> None:
    """Append one row as one line in one write, flushed to disk before the next model starts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as journal:
        torn = journal.tell() > 0 and path.read_bytes()[-1:] != b"\n"  # a killed run's half line stays alone
        journal.write((b"\n" if torn else b"") + json.dumps(row, default=str).encode() + b"\n")
        journal.flush()
        os.fsync(journal.fileno())


def write_series(folder: Path, row: dict) -> Path:
    """Keep a row's per-iteration times (ms), gzip-compressed JSON, for a person to look at."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{row['model']}@{row['input_width']}-{row['settings_id']}.json.gz"
    with gzip.open(path, "wt") as handle:
        json.dump({k: row[k] for k in ("target", "model", "input_width", "settings_id", "times_ms")}, handle)
    return path


# --- the stage ---------------------------------------------------------------------------------------------

def measured_table(manifest: pd.DataFrame, rows: list[dict], features: pd.DataFrame | None) -> pd.DataFrame:
    """The canonical table: the zoo's feature rows (or identity alone) joined with the measured rows."""
    measured = pd.DataFrame([{k: v for k, v in row.items() if k != "times_ms"} for row in rows])
    if measured.empty:
        return schema.empty_table()
    identity = manifest.rename(columns={"name": "model", "source": "zoo_source"})
    identity = identity[["model", "family", "zoo_source", "synthetic"]].drop_duplicates("model")
    table = measured.merge(identity, on="model", how="left")
    if features is not None:  # features depend on the input width: joined on both
        columns = ["model", "input_width"] + [c for c in schema.FEATURE_COLUMNS if c in features.columns]
        table = table.merge(features[columns].drop_duplicates(["model", "input_width"]), on=["model", "input_width"],
                            how="left")
    table["source"] = "measured"
    table["family"] = table["family"].fillna(table["model"].map(_family_or_model))
    table["synthetic"] = table["synthetic"].fillna(False).astype(bool)
    return schema.conform(table)


def _family_or_model(model: str) -> str:
    try:
        return schema.family_of(model)
    except ValueError:
        return model


def schedule_time(table: pd.DataFrame) -> dict:
    """Seconds the schedule spent (warm-up + timed) on the table's ok rows, and what the seed's fixed 250 runs would."""
    ok = table[table["status"] == "ok"] if len(table) else table
    if not len(ok):
        return {"schedule_s": 0.0, "fixed_250_equivalent_s": 0.0}
    fixed = config.group_option("measure", "fixed")
    runs = int(fixed["warmup"]) + int(fixed["iterations"])
    return {"schedule_s": float((ok["warmup_s"] + ok["timed_s"]).sum()),
            "fixed_250_equivalent_s": float((ok["mean_ms"] * runs / 1000.0).sum())}


def measure_zoo(name: str, params: dict, schedule: str | None = None, progress: bool = True) -> dict:
    """Measure every zoo model on a target, resuming from its journal, and write the target's table."""
    from tqdm import tqdm

    from perfpred.measure import runners

    target, settings = target_settings(name, params, schedule)
    sid = settings_id(target, settings)
    manifest = zoo.read_manifest(config.path("zoo", params) / zoo.MANIFEST)
    runs = config.path("measure_runs", params) / name
    journal = runs / "journal.jsonl"
    done = {row_key(r["model"], r["requested_width"], r["settings_id"]): r for r in read_journal(journal)}
    pending, skipped = [], 0
    for entry in manifest.itertuples(index=False):
        if row_key(entry.name, int(entry.input_width), sid) in done:
            skipped += 1
        else:
            pending.append(entry)
    fork = target["kind"] == "local" and settings.get("worker") == "fork"
    server = runners.ForkServer(parallel_workers(settings)) if fork else None
    entries = [(e.name, config.project_root() / e.descriptor, int(e.input_width)) for e in pending]
    bar = tqdm(total=len(entries), desc=f"measure {name}", unit="model", disable=not progress)
    for (model, _, width), row in measure_many(entries, target, settings, server):
        bar.set_postfix_str(model)
        bar.update()
        row["requested_width"] = width
        if row["times_ms"]:
            row["series"] = str(write_series(runs / "series", row).relative_to(runs))
        row.pop("times_ms")
        append_journal(journal, row)
        done[row_key(model, width, sid)] = row
    bar.close()
    if server is not None:
        server.close()
    wanted = {row_key(e.name, int(e.input_width), sid) for e in manifest.itertuples(index=False)}
    rows = [row for key, row in done.items() if key in wanted]
    features_path = config.path("features", params) / "features.parquet"
    features = pd.read_parquet(features_path) if features_path.exists() else None
    table = measured_table(manifest, rows, features)
    out = config.path("measurements", params) / f"{name}.parquet"
    measurements.write_table(table, out)
    other_settings = sum(1 for key in done if key.split("#")[1] != sid)
    summary = {"target": name, "settings_id": sid, "schedule": settings["kind"], "models": len(manifest),
               "measured": len(pending), "skipped": skipped,
               "ok": int((table["status"] == "ok").sum()) if len(table) else 0,
               "failed": int((table["status"] == "failed").sum()) if len(table) else 0,
               "swapped": int(table["swapped"].fillna(False).astype(bool).sum()) if len(table) else 0,
               "journal_rows_other_settings": other_settings,
               "environments": int(table[["hostname", "cpu_model", "tf_version"]].drop_duplicates().dropna().shape[0])
               if len(table) else 0,
               "mean_overhead_s": float(table["overhead_s"].mean()) if len(table) else None,
               "server_import_s": server.import_s if server is not None else None,
               **schedule_time(table),
               "parallel": server.parallel if server is not None else 1}
    (out.parent / f"{name}.measure.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# --- the command -------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `perfpred measure`."""
    parser.add_argument("model", nargs="?", help="a descriptor path (Keras JSON; .onnx on an onnxruntime target) or a zoo "
                        "model name")
    parser.add_argument("--target", required=True, help="a local or ssh target of conf/target/, e.g. host-cpu-tf")
    parser.add_argument("--input-size", type=int, help="square input width to build the model at")
    parser.add_argument("--schedule", help="conf/measure/ option (adaptive | fixed); default: the configured one")
    parser.add_argument("--zoo", action="store_true", help="measure the whole zoo into the target's table (the stage)")
    parser.add_argument("--json", action="store_true", help="print the row as one JSON object")


def resolve_model(model: str, params: dict) -> tuple[str, Path, int | None]:
    """A descriptor path or a zoo name -> (model name, descriptor path, manifest input width or None)."""
    path = Path(model)
    if path.suffix == ".json" or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such descriptor")
        return path.stem, path, None
    manifest = zoo.read_manifest(config.path("zoo", params) / zoo.MANIFEST)
    match = manifest[manifest["name"] == model]
    if match.empty:
        raise KeyError(f"{model!r} is neither a descriptor file nor a model of {config.path('zoo', params)}/manifest.csv")
    entry = match.iloc[0]
    return model, config.project_root() / entry["descriptor"], int(entry["input_width"])


def run(args: argparse.Namespace) -> int:
    """Measure one model and print its row, or (--zoo) the whole zoo and print the summary."""
    params = config.load_params()
    if args.zoo:
        summary = measure_zoo(args.target, params, args.schedule)
        print(f"{args.target}: measured {summary['measured']}, skipped {summary['skipped']} (already in the journal); "
              f"table: {summary['ok']} ok, {summary['failed']} failed, {summary['swapped']} flagged for swapping")
        if summary["schedule_s"]:
            print(f"  schedule (warm-up + timed): {summary['schedule_s']:.0f} s; the fixed 250-run schedule would take "
                  f"{summary['fixed_250_equivalent_s']:.0f} s at these latencies")
        if summary["mean_overhead_s"] is not None:
            print(f"  per-model overhead (worker start, build, first call): {summary['mean_overhead_s']:.1f} s mean"
                  + (f"; framework import once: {summary['server_import_s']:.1f} s" if summary["server_import_s"] else ""))
        if summary["environments"] > 1:
            print(f"  warning: the table mixes {summary['environments']} environments (host, CPU, TensorFlow version); "
                  "see the hostname, cpu_model and tf_version columns")
        if summary["journal_rows_other_settings"]:
            print(f"  {summary['journal_rows_other_settings']} journal rows measured under other settings are not in "
                  "the table")
        return 0
    if args.model is None:
        raise ValueError("give a MODEL (descriptor path or zoo name) or --zoo")
    name, descriptor, width = resolve_model(args.model, params)
    target, settings = target_settings(args.target, params, args.schedule)
    from perfpred.measure import runners

    fork = target["kind"] == "local" and settings.get("worker") == "fork"
    with runners.ForkServer() if fork else contextlib.nullcontext() as server:
        row = measure_model(name, descriptor, args.input_size or width, target, settings, server)
    row.pop("times_ms")
    if args.json:
        print(json.dumps(row, default=str))
    else:
        shown = ("target", "model", "input_width", "status", "latency_ms", "memory_mb", "iterations", "cv",
                 "pattern", "first_call_ms", "baseline_memory_mb", "overhead_s", "reason")
        print("  ".join(f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}" for k in shown))
    return 0 if row["status"] == "ok" else 1
