"""The `measure` stage and `perfpred measure`: latency and peak memory of zoo models on local or SSH targets."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import sys
from pathlib import Path

import pandas as pd

from perfpred import config
from perfpred.data import measurements, schema
from perfpred.measure.journal import append_journal, read_journal, row_key, to_measure, write_series
from perfpred.measure.lookup import architecture_name, resolve_model
from perfpred.zoo import build as zoo

__all__ = ["append_journal", "architecture_name", "measure_many", "measure_model", "measure_zoo", "read_journal",
           "resolve_model", "row_key", "write_series"]

#: The schedule's settings, passed to the agent.
SCHEDULE_KEYS = ("kind", "warmup", "warmup_seconds", "iterations", "min_iterations", "min_seconds", "max_iterations",
                 "max_seconds", "target_rel_ci", "check_every")
#: Settings that change a figure: rows measured under different ones are never mixed. Not `worker`: fork and
#: spawn workers give the same figures (memory leaves out file-backed pages, see agent.file_backed_mb).
SETTING_KEYS = SCHEDULE_KEYS + ("central", "trim", "threads", "cpu_affinity", "prepare_cpus", "parallel", "priority",
                                 "seed", "retime_slow")
#: Result fields copied into a row (the statistics, memory, overhead and environment).
ROW_FIELDS = ("status", "reason", "latency_ms", "memory_mb", "mean_ms", "median_ms", "min_ms", "max_ms", "std_ms",
              "p90_ms", "p99_ms", "trimmed_mean_ms", "iterations", "cv", "median_ci_rel", "pattern", "high_spikes",
              "low_spikes", "drift_rho", "stop_reason", "first_call_ms", "baseline_memory_mb", "build_peak_memory_mb",
              "host_memory_mb", "peak_scope", "swapped", "process_swap_kb", "wall_s", "import_s", "build_s",
              "convert_s", "warmup_runs", "warmup_s", "timed_s", "overhead_s", "tflite_bytes", "tf_version",
              "hostname", "cpu_model", "cpu_cores", "kernel", "python_version", "governor", "load_1m", "cpu_affinity",
              "prepare_cpus", "turn_wait_s", "timed_window_s", "priority", "autogroup_nice", "file_memory_mb",
              "failure", "measured_on")
ROW_FIELDS += ("onnx_bytes", "onnxruntime_version", "export_cached")  # host-cpu-onnxruntime (measure/onnx_runtime.py)
ROW_FIELDS += ("probe_us", "probe_after_us")  # the machine probe (agent.machine_probe_us), and stage.retime_slow's mark


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
    if target.get("toolchain") == "onnxruntime":  # exports of zoo descriptors: a cache, outside the journal DVC pushes
        settings["onnx_cache"] = str(config.path("onnx_cache", params) / name)
    return target, settings


def settings_id(target: dict, settings: dict) -> str:
    """A short hash of everything that changes a figure: target toolchain and device, schedule, noise control."""
    from perfpred.measure.agent import AGENT_VERSION

    key = {"target": target["name"], "toolchain": target["toolchain"], "device": target.get("device", "cpu"),
           "agent_version": AGENT_VERSION}
    key |= {k: settings.get(k) for k in SETTING_KEYS}
    if settings.get("layout"):  # a kernel zoo's ONNX graphs in a model's layout (measure/onnx_layout.py); absent elsewhere
        key["layout"] = settings["layout"]
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def job(model: str, descriptor: Path, input_width: int | None, target: dict, settings: dict) -> dict:
    """The agent's job for one model on one target."""
    schedule = {k: settings[k] for k in SCHEDULE_KEYS if k in settings}
    return {"model": model, "descriptor": str(descriptor), "input_width": input_width,
            "toolchain": target["toolchain"] if target["toolchain"] in ("tflite", "onnxruntime") else "tf",
            "device": target.get("device", "cpu"), "onnx_cache": settings.get("onnx_cache"),
            "layout": settings.get("layout"), "threads": settings["threads"], "cpu_affinity": settings.get("cpu_affinity"),
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


def measure_many(entries: list, target: dict, settings: dict, server=None, hosts: list[dict] | None = None):
    """Measure (name, descriptor, width) entries; yield (entry, row) as each finishes.

    Local: pipelined on a fork server (or a new interpreter each). SSH: a work queue over the target's
    hosts that answer (`hosts`, else checked here: runners.TargetUnreachable when none does).
    """
    from perfpred.measure import farm, runners

    timeout_s = float(settings["timeout_s"])
    jobs = [job(name, descriptor, width, target, settings) | {"entry": index}
            for index, (name, descriptor, width) in enumerate(entries)]
    if target["kind"] == "ssh":
        results = farm.measure_on_farm(jobs, hosts or runners.check_target(target)[0], timeout_s)
    elif server is None:
        results = ((j, runners.run(j, target, timeout_s)) for j in jobs)
    else:
        results = ((j, runners.classify(r)) for j, r in server.map(jobs, timeout_s))
    for sent, result in results:
        name, _, width = entries[sent["entry"]]
        result.setdefault("measured_on", "local" if target["kind"] == "local" else None)
        yield entries[sent["entry"]], to_row(result, name, width, target, settings)


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


def measure_zoo(name: str, params: dict, schedule: str | None = None, progress: bool = True,
                retry_failed: bool = False) -> dict:
    """Measure every zoo model on a target, resuming from its journal, and write the target's table.

    Only final results are journaled: ok rows and model failures. A model that an infrastructure
    failure (board unreachable or gone) left unmeasured is counted in `not_measured` and measured by the
    next run; `retry_failed` measures the journal's failed rows again (the new row replaces the old).
    """
    from tqdm import tqdm

    from perfpred.measure import runners

    target, settings = target_settings(name, params, schedule)
    hosts, unreachable = runners.check_target(target) if target["kind"] == "ssh" else (None, [])  # fail fast
    sid = settings_id(target, settings)
    manifest = zoo.read_manifest(config.path("zoo", params) / zoo.MANIFEST)
    runs = config.path("measure_runs", params) / name
    journal = runs / "journal.jsonl"
    done = {row_key(r["model"], r["requested_width"], r["settings_id"]): r for r in read_journal(journal)}
    pending, skipped = [], 0
    for entry in manifest.itertuples(index=False):
        if to_measure(done.get(row_key(entry.name, int(entry.input_width), sid)), retry_failed):
            pending.append(entry)
        else:
            skipped += 1
    fork = target["kind"] == "local" and settings.get("worker") == "fork"
    server = runners.ForkServer(parallel_workers(settings)) if fork else None
    descriptors = {(e.name, int(e.input_width)): config.project_root() / e.descriptor for e in manifest.itertuples(index=False)}
    entries = [(e.name, descriptors[(e.name, int(e.input_width))], int(e.input_width)) for e in pending]
    bar = tqdm(total=len(entries), desc=f"measure {name}", unit="model", disable=not progress)
    measured, not_measured = [], []
    for (model, _, width), row in measure_many(entries, target, settings, server, hosts):
        bar.set_postfix_str(model)
        bar.update()
        if row["failure"] == runners.INFRASTRUCTURE:  # not the model's doing: never a final row
            not_measured.append(f"{model}: {row['reason']}")
            continue
        row |= {"requested_width": width, "timings": 1, "retimed": False}
        if row["times_ms"]:
            row["series"] = str(write_series(runs / "series", row).relative_to(runs))
        row.pop("times_ms")
        append_journal(journal, row)
        done[row_key(model, width, sid)] = row
        measured.append(row)
    bar.close()
    retimed = retime_slow(done, sid, measured, descriptors, target, settings, server, hosts, runs, progress)
    if server is not None:
        server.close()
    wanted = {row_key(e.name, int(e.input_width), sid) for e in manifest.itertuples(index=False)}
    rows = [row for key, row in done.items() if key in wanted]
    features_path = config.path("features", params) / "features.parquet"
    features = pd.read_parquet(features_path) if features_path.exists() else None
    table = measured_table(manifest, rows, features)
    out = config.path("measurements", params) / f"{name}.parquet"
    measurements.write_table(table, out)
    summary = {"target": name, "settings_id": sid, "schedule": settings["kind"], "models": len(manifest),
               "measured": len(measured), "measured_ok": sum(r["status"] == "ok" for r in measured),
               "not_measured": len(not_measured), "not_measured_reasons": not_measured[:5], "skipped": skipped,
               "hosts": sorted({r["measured_on"] for r in measured if r.get("measured_on")}),
               "hosts_unreachable": unreachable,
               "ok": int((table["status"] == "ok").sum()) if len(table) else 0,
               "failed": int((table["status"] == "failed").sum()) if len(table) else 0,
               "swapped": int(table["swapped"].fillna(False).astype(bool).sum()) if len(table) else 0,
               "journal_rows_other_settings": sum(1 for key in done if key.split("#")[1] != sid),
               "environments": int(table[["hostname", "cpu_model", "tf_version"]].drop_duplicates().dropna().shape[0])
               if len(table) else 0,
               "mean_overhead_s": mean_overhead_s(measured),
               **retimed,
               "server_import_s": server.import_s if server is not None else None,
               **schedule_time(table),
               "parallel": server.parallel if server is not None else len(hosts or [None])}
    (out.parent / f"{name}.measure.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def probe_of(row: dict) -> float | None:
    """The slower of a row's two machine probes (before the warm-up, after the timed run; us), None without them."""
    values = [row.get(key) for key in ("probe_us", "probe_after_us")]
    values = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
    return max(values) if values else None


#: The probe of the machine at its usual speed: this quantile of a pass's probes. A slow spell only adds time, and
#: one lasted half a TF zoo pass here (probes 46-50 us from the 50th model on, 37-39 before): the median would have
#: been a slow spell's own probe had it lasted a little longer; the lower quartile is not until it lasts three.
USUAL_PROBE_QUANTILE = 0.25


def usual_probe_us(probes: list[float]) -> float:
    """The machine's probe at its usual speed: USUAL_PROBE_QUANTILE of `probes` (linear interpolation)."""
    from perfpred.measure.agent import percentile

    return percentile(sorted(probes), 100 * USUAL_PROBE_QUANTILE)


def slow_rows(rows: list[dict], ratio: float, typical: float | None = None) -> tuple[list[dict], float | None]:
    """The ok rows whose probe (probe_of) exceeds `ratio` times `typical` (default: usual_probe_us of `rows`' ok rows;
    a reference such as the target table's `probe_usual_us` for a few models measured apart), and `typical`."""
    probes = [(row, probe_of(row)) for row in rows if row.get("status") == "ok"]
    probes = [(row, value) for row, value in probes if value is not None]
    if typical is None and len(probes) < 3:  # too few to know what the machine's usual speed is
        return [], None
    typical = usual_probe_us([value for _, value in probes]) if typical is None else float(typical)
    return [row for row, value in probes if value > ratio * typical], typical


def retime_slow(done: dict, sid: str, measured: list[dict], descriptors: dict, target: dict, settings: dict, server,
                hosts, runs: Path, progress: bool, series: bool = True, reference_us: float | None = None) -> dict:
    """Time again, once, the models whose timed run the machine probe found slow; keep the faster machine's row.

    A row is slow when its probe (the slower of the two around its timed run) exceeds `retime_slow` times the usual
    probe (usual_probe_us) of the settings' rows in `done` (keyed by row_key), or `reference_us` where given (the
    target table's, table_probe_us: a few models measured apart from it, as benchmarks measure them). It is measured
    again after the pass, minutes later on a zoo, and the new row replaces it in the journal only if its probe is
    lower: the figure is then what the model costs on the machine as it usually runs, not during a slow spell. Either
    way the row kept is journaled with `timings: 2`, and a model is timed again once at most (a resumed stage does not
    time it a third time). No setting, or under three probed rows: nothing is timed again.

    `descriptors`: (model, requested width or None) -> descriptor path; `series`: write the new timing's series
    beside the journal, as the zoo stage does. Returns the summary's counts (rows found slow, rows replaced, the usual
    probe).
    """
    from tqdm import tqdm

    from perfpred.measure import runners

    ratio = settings.get("retime_slow")
    current = [row for key, row in done.items() if key.split("#")[1] == sid]
    slow, typical = slow_rows(current, float(ratio), reference_us) if ratio else ([], None)
    slow = [row for row in slow if int(row.get("timings") or 1) < 2]  # each model is timed again once at most
    counts = {"probe_usual_us": typical, "retimed": len(slow), "retimed_kept": 0}
    if not slow:
        return counts
    keys = [(row["model"], None if row.get("requested_width") is None else int(row["requested_width"])) for row in slow]
    entries = [(model, descriptors[(model, width)], width) for model, width in keys if (model, width) in descriptors]
    bar = tqdm(total=len(entries), desc=f"time again {target['name']} (slow machine)", unit="model",
               disable=not progress)
    for (model, _, requested), row in measure_many(entries, target, settings, server, hosts):
        bar.update()
        if row["failure"] == runners.INFRASTRUCTURE:  # not the model's doing, nor the machine's speed: as it was
            continue
        key = row_key(model, requested, sid)
        old = done[key]
        if row["status"] == "ok" and probe_of(row) is not None and probe_of(row) < probe_of(old):
            row |= {"requested_width": requested, "timings": 2, "retimed": True}
            if series and row["times_ms"]:
                row["series"] = str(write_series(runs / "series", row).relative_to(runs))
            counts["retimed_kept"] += 1
        else:  # the first timing stays, journaled again as timed twice: never timed a third time
            row = old | {"timings": 2}
        row.pop("times_ms", None)
        append_journal(runs / "journal.jsonl", row)
        done[key] = row
        measured[:] = [row if (r["model"], r["requested_width"]) == (model, requested) else r for r in measured]
    bar.close()
    return counts


def table_probe_us(target: str, params: dict) -> float | None:
    """The usual machine probe of the target's table (`probe_usual_us` of its measure stage's summary), if any."""
    summary = config.path("measurements", params) / f"{target}.measure.json"
    return json.loads(summary.read_text()).get("probe_usual_us") if summary.exists() else None


def machine_slower(row: dict, target: str, params: dict, settings: dict) -> float | None:
    """How many times slower than the target's table's usual probe the machine probe found a row (probe_of), where
    that exceeds the `retime_slow` ratio; else (or without a probe or a table's summary) None."""
    probe, typical = probe_of(row), table_probe_us(target, params)
    if not settings.get("retime_slow") or probe is None or not typical:
        return None
    return probe / typical if probe > float(settings["retime_slow"]) * typical else None


def mean_overhead_s(rows: list[dict]) -> float | None:
    """Mean per-model overhead (worker start, build, first call) of the ok rows measured now; None without any."""
    values = [r["overhead_s"] for r in rows if r["status"] == "ok" and isinstance(r.get("overhead_s"), float)
              and math.isfinite(r["overhead_s"])]
    return sum(values) / len(values) if values else None


def zoo_exit_code(summary: dict) -> int:
    """0 when the stage is complete and some model measured; 1 when models are left unmeasured or all failed."""
    all_failed = (summary["measured"] and not summary["measured_ok"]) or (summary["models"] and not summary["ok"])
    return 1 if summary["not_measured"] or all_failed else 0


# --- the command -------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `perfpred measure`."""
    parser.add_argument("model", nargs="?", help="a descriptor path (Keras JSON; .onnx on an onnxruntime target), a zoo "
                        "model name (e.g. MobileNetV2-a1.0_160), or an architecture with --input-size (MobileNetV2-1.0)")
    parser.add_argument("--target", required=True, help="a local or ssh target of conf/target/, e.g. host-cpu-tf")
    parser.add_argument("--input-size", type=int, help="square input width to build the model at")
    parser.add_argument("--schedule", help="conf/measure/ option (adaptive | fixed); default: the configured one")
    parser.add_argument("--zoo", action="store_true", help="measure the whole zoo into the target's table (the stage)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="with --zoo: measure the journal's failed rows again (the new row replaces the old)")
    parser.add_argument("--json", action="store_true", help="print the row as one JSON object")


def print_zoo_summary(target: str, summary: dict) -> None:
    """The stage's summary in a few lines."""
    print(f"{target}: measured {summary['measured']}, skipped {summary['skipped']} (already in the journal); "
          f"table: {summary['ok']} ok, {summary['failed']} failed, {summary['swapped']} flagged for swapping")
    if summary["schedule_s"]:
        print(f"  schedule (warm-up + timed): {summary['schedule_s']:.0f} s; the fixed 250-run schedule would take "
              f"{summary['fixed_250_equivalent_s']:.0f} s at these latencies")
    if summary["mean_overhead_s"] is not None:
        print(f"  per-model overhead (worker start, build, first call): {summary['mean_overhead_s']:.1f} s mean"
              + (f"; framework import once: {summary['server_import_s']:.1f} s" if summary["server_import_s"] else ""))
    if summary.get("retimed"):
        print(f"  timed again: {summary['retimed']} models timed while the machine ran slow (machine probe above "
              f"retime_slow times its usual {summary['probe_usual_us']:.1f} us); the new timing kept for "
              f"{summary['retimed_kept']}")
    if len(summary["hosts"]) > 1:
        print(f"  measured on {len(summary['hosts'])} hosts: {', '.join(summary['hosts'])}")
    for problem in summary["hosts_unreachable"]:
        print(f"  warning: left out of the farm: {problem}", file=sys.stderr)
    if summary["environments"] > 1:
        print(f"  warning: the table mixes {summary['environments']} environments (host, CPU, TensorFlow version); "
              "see the hostname, cpu_model and tf_version columns")
    if summary["journal_rows_other_settings"]:
        print(f"  {summary['journal_rows_other_settings']} journal rows measured under other settings are not in "
              "the table")
    if summary["not_measured"]:
        print(f"  error: {summary['not_measured']} models not measured (not their fault, nothing journaled; run again "
              f"to measure them), e.g. {summary['not_measured_reasons'][0]}", file=sys.stderr)
    elif summary["models"] and not summary["ok"] or summary["measured"] and not summary["measured_ok"]:
        print("  error: every model failed: see the reason column of the table (rerun with --retry-failed after a fix)",
              file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Measure one model and print its row, or (--zoo) the whole zoo and print the summary."""
    from perfpred.measure import runners

    params = config.load_params()
    try:
        if args.zoo:
            summary = measure_zoo(args.target, params, args.schedule, retry_failed=args.retry_failed)
            print_zoo_summary(args.target, summary)
            return zoo_exit_code(summary)
        if args.model is None:
            raise ValueError("give a MODEL (descriptor path or zoo name) or --zoo")
        name, descriptor, width = resolve_model(args.model, params, args.input_size)
        target, settings = target_settings(args.target, params, args.schedule)
        fork = target["kind"] == "local" and settings.get("worker") == "fork"
        with runners.ForkServer() if fork else contextlib.nullcontext() as server:
            row = measure_model(name, descriptor, args.input_size or width, target, settings, server)
    except runners.TargetUnreachable as error:
        print(f"perfpred measure: error: {error}", file=sys.stderr)
        return 3
    row.pop("times_ms")
    slower = machine_slower(row, args.target, params, settings)
    if slower:
        print(f"perfpred measure: warning: the machine ran {slower:.2f}x slower than when {args.target}'s table was "
              f"measured (machine probe, agent.machine_probe_us): measure again later to compare with the table or a "
              f"prediction", file=sys.stderr)
    if args.json:
        print(json.dumps(row, default=str))
    else:
        shown = ("target", "model", "input_width", "status", "latency_ms", "memory_mb", "iterations", "cv",
                 "pattern", "first_call_ms", "baseline_memory_mb", "overhead_s", "measured_on", "reason")
        print("  ".join(f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}" for k in shown))
    return 0 if row["status"] == "ok" else 1
