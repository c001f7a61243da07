"""The kernel zoo's stages: `perfpred kernel-zoo` samples it; `perfpred kernel-measure` measures it on a target.

Measurement is the model harness itself (perfpred.measure.stage: same agent, journal, resume, failed rows and
settings, with the kernel profile's shorter schedule on top): a kernel descriptor is a model to it. After
the first round, a predictor fitted on it names the configurations it gets most wrong (leave-one-out), and
an adaptive round measures configurations drawn near them.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pandas as pd

from perfpred import config
from perfpred.kernels import detector, sampler

MANIFEST = "manifest.csv"
#: the kernel table's columns beyond the configuration (detector.CONFIG_FIELDS)
IDENTITY = ("name", "kind", "round", "descriptor")


#: The layout a kernel's ONNX export is timed in (perfpred.measure.onnx_layout): tf2onnx wraps a lone kernel in
#: NHWC <-> NCHW Transposes that a model pays once, not around every kernel. Timed as exported, ORT's kernel table
#: priced them in proportion to the tensors (a 2x2 max pool on 127x127x88: 0.96 ms exported, 0.31 ms in NCHW; a
#: global pool on 131x131x18 0.26 vs 0.07), and its synthetic networks spread from 0.36x to 1.7x of their sums.
KERNEL_ONNX_LAYOUT = "nchw"


def kernels_dir(params: dict) -> Path:
    """data/kernels (conf/paths: kernels)."""
    return config.path("kernels", params)


def zoo_descriptors(params: dict) -> list[Path]:
    """The model zoo's descriptors, whose kernels give the ranges the kernel zoo samples."""
    from perfpred.zoo import build as zoo

    manifest = zoo.read_manifest(config.path("zoo", params) / zoo.MANIFEST)
    return [config.project_root() / path for path in manifest["descriptor"]]


def spec_from_name(name: str) -> dict:
    """The configuration a kernel descriptor's name encodes (sampler.spec_name's inverse)."""
    kind, *parts = name.split("_")
    if kind == "chain":
        return {"kind": kind, "of": parts[0], "n": int(parts[1][1:])}
    keys = {"h": "h", "c": "cin", "o": "cout", "k": "k", "s": "s", "g": "groups"}
    bare = {"bn": False} if parts and parts[-1] == sampler.NO_BATCH_NORM else {}
    function = {"fn": parts[-1][1:].replace("-", "_")} if parts and parts[-1].startswith("a") else {}
    numbers = parts[:len(parts) - len(bare) - len(function)]
    return {"kind": kind} | {keys[part[0]]: int(part[1:]) for part in numbers} | bare | function


def write_manifest(path: Path, rows: list[dict]) -> None:
    """The kernel zoo manifest: name, kind, round, descriptor path (relative to the project)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(IDENTITY), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def make_zoo(params: dict) -> dict:
    """Sample the kernel zoo of the configured profile into data/kernels/zoo (descriptors + manifest)."""
    profile = params["kernel_zoo"]
    pools = sampler.zoo_pools(zoo_descriptors(params))
    specs = sampler.plan(profile, pools, int(profile["seed"]))
    folder = kernels_dir(params) / "zoo"
    paths = sampler.write(specs, folder / "models")
    root = config.project_root().resolve()
    rows = [{"name": sampler.spec_name(s), "kind": s["kind"], "round": 1,
             "descriptor": p.resolve().relative_to(root).as_posix()} for s, p in zip(specs, paths, strict=True)]
    write_manifest(folder / MANIFEST, rows)
    ranges = {kind: len(pool) for kind, pool in pools.items()}
    return {"kernels": len(rows), "zoo_kernels_by_kind": ranges}


def kernel_row(name: str, kind: str, descriptor: Path, rules: dict) -> dict:
    """The configuration of a kernel descriptor's main kernel under a target's fusion rules."""
    kernels = detector.detect_graph(detector.descriptors.load(descriptor), rules)
    main = next((k for k in kernels if k.kind == kind), kernels[0])
    row = {"name": name, "kind": kind, **main.features(), "affine": main.affine, "function": main.function,
           "kernels_in_descriptor": len(kernels)}
    if kind == "chain":  # a kind's kernels in a row (sampler.build_chain); kernels_in_descriptor: how many the rules see
        row["chain_of"] = spec_from_name(name)["of"]
    return row


def measure_round(entries: list[dict], target: str, params: dict, retry_failed: bool = False) -> list[dict]:
    """Measure kernel descriptors with the model harness (resuming from the kernel journal); their rows.

    `retry_failed`: the journal's failed rows are measured again (the new row wins, as in `measure --retry-failed`).
    """
    from perfpred.measure import runners
    from perfpred.measure import stage as harness

    settings_params = params | {"measure": params["measure"] | (params["kernel_zoo"].get("measure") or {})}
    target_cfg, settings = harness.target_settings(target, settings_params)
    if target_cfg.get("toolchain") == "onnxruntime":  # timed as a model runs it: NCHW, no exporter's transposes
        settings["layout"] = KERNEL_ONNX_LAYOUT
    sid = harness.settings_id(target_cfg, settings)
    runs = kernels_dir(params) / "runs" / target
    journal = runs / "journal.jsonl"
    done = {harness.row_key(r["model"], r["requested_width"], r["settings_id"]): r for r in harness.read_journal(journal)}
    root = config.project_root()
    pending = [(e["name"], root / e["descriptor"], None) for e in entries
               if harness.to_measure(done.get(harness.row_key(e["name"], None, sid)), retry_failed)]
    fork = target_cfg["kind"] == "local" and settings.get("worker") == "fork"
    server = runners.ForkServer(harness.parallel_workers(settings)) if fork and pending else None
    try:
        for (name, _, _), row in harness.measure_many(pending, target_cfg, settings, server):
            row["requested_width"] = None
            row.pop("times_ms")
            harness.append_journal(journal, row)
            done[harness.row_key(name, None, sid)] = row
        descriptors = {(e["name"], None): root / e["descriptor"] for e in entries}  # kernels timed in a slow spell
        harness.retime_slow(done, sid, [], descriptors, target_cfg, settings, server, None, runs, False, series=False)
    finally:
        if server is not None:
            server.close()
    return [done[harness.row_key(e["name"], None, sid)] for e in entries if harness.row_key(e["name"], None, sid) in done]


def table(entries: list[dict], rows: list[dict], rules: dict) -> pd.DataFrame:
    """Kernel configurations joined with their measured latency (failed rows kept, with their reason)."""
    measured = {row["model"]: row for row in rows}
    out = []
    for entry in entries:
        row = measured.get(entry["name"])
        if row is None:
            continue
        features = kernel_row(entry["name"], entry["kind"], config.project_root() / entry["descriptor"], rules)
        out.append(features | {"round": int(entry["round"]), "descriptor": entry["descriptor"],
                               "status": row.get("status"), "reason": row.get("reason"),
                               "latency_ms": row.get("latency_ms"), "median_ci_rel": row.get("median_ci_rel"),
                               "overhead_s": row.get("overhead_s"), "settings_id": row.get("settings_id")})
    return pd.DataFrame(out)


def measure_target(target: str, params: dict, progress: bool = True, retry_failed: bool = False) -> dict:
    """Both rounds on one target: the sampled zoo, then configurations near the worst-predicted ones."""
    from perfpred.kernels import predictor

    folder = kernels_dir(params)
    entries = pd.read_csv(folder / "zoo" / MANIFEST).to_dict("records")
    rules = detector.fusion_rules(target)
    first = table(entries, measure_round(entries, target, params, retry_failed), rules)
    profile = params["kernel_zoo"]["adaptive"]
    rated = predictor.rated_for(first, rules.get(detector.FUNCTION_RATES_KEY, ()))  # as the target's predictors read it
    worst = predictor.worst_configurations(rated, int(profile["worst"]), seed=int(params["kernel_zoo"]["seed"]))
    pools = sampler.zoo_pools(zoo_descriptors(params))
    taken = {e["name"] for e in entries}
    specs = sampler.adapt([spec_from_name(name) for name in worst], int(profile["per_worst"]), pools,
                          int(params["kernel_zoo"]["seed"]), taken)
    paths = sampler.write(specs, folder / "adaptive" / target)
    root = config.project_root().resolve()
    extra = [{"name": sampler.spec_name(s), "kind": s["kind"], "round": 2,
              "descriptor": p.resolve().relative_to(root).as_posix()} for s, p in zip(specs, paths, strict=True)]
    second = table(extra, measure_round(extra, target, params, retry_failed), rules)
    result = pd.concat([first, second], ignore_index=True)
    out = folder / "measurements" / f"{target}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    result.to_parquet(out, index=False)
    summary = {"target": target, "kernels": len(result), "adaptive": len(second),
               "ok": int((result["status"] == "ok").sum()), "failed": int((result["status"] != "ok").sum()),
               "mean_overhead_s": float(result["overhead_s"].mean())}
    (out.parent / f"{target}.measure.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `perfpred kernel-zoo` / `perfpred kernel-measure`."""
    parser.add_argument("--target", help="kernel-measure: a local or ssh target of conf/target/ (e.g. host-cpu-tf)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="kernel-measure: measure the journal's failed kernels again (after a fix; the new row wins)")


def run(args: argparse.Namespace) -> int:
    """Sample the kernel zoo (no --target) or measure it on a target."""
    params = config.load_params()
    if args.target is None:
        summary = make_zoo(params)
        print(f"kernel zoo: {summary['kernels']} kernel descriptors in {kernels_dir(params) / 'zoo'}")
        return 0
    summary = measure_target(args.target, params, retry_failed=args.retry_failed)
    print(f"{args.target}: {summary['kernels']} kernels ({summary['adaptive']} adaptive), {summary['ok']} ok, "
          f"{summary['failed']} failed; per-kernel overhead {summary['mean_overhead_s']:.1f} s mean")
    return 0
