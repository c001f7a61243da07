"""One model's memory figure measured three ways: a single fork worker, a pipelined zoo run, a spawned worker.

    PYTHONPATH=src python benchmarks/measure_memory_ways.py [--target host-cpu-tf] [--zoo data/zoo] [MODEL ...]

The first MODEL (default MobileNet-a0.25_128) is the one compared; the others (default: the next three
of the manifest) run beside it in the zoo-like run, `measure.parallel` workers in flight as the stage
does. Prints memory_mb, baseline_memory_mb and the file-backed pages left out (file_memory_mb) per way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from perfpred import config
from perfpred.measure import runners
from perfpred.measure import stage as measure
from perfpred.zoo import build as zoo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--target", default="host-cpu-tf")
    parser.add_argument("--zoo", type=Path, default=config.path("zoo"))
    args = parser.parse_args()
    manifest = zoo.read_manifest(args.zoo / zoo.MANIFEST).set_index("name")
    names = args.models or ["MobileNet-a0.25_128"]
    names += [n for n in manifest.index if n not in names][: max(0, 4 - len(names))]
    entries = [(n, config.project_root() / manifest.loc[n, "descriptor"], int(manifest.loc[n, "input_width"]))
               for n in names]
    target, settings = measure.target_settings(args.target, config.load_params())
    ways = {}
    with runners.ForkServer() as server:
        ways["single fork worker"] = measure.measure_model(*entries[0], target, settings, server)
    with runners.ForkServer(measure.parallel_workers(settings)) as server:
        zoo_rows = dict((entry[0], row) for entry, row in measure.measure_many(entries, target, settings, server))
        ways[f"zoo run ({server.parallel} in flight)"] = zoo_rows[names[0]]
    ways["spawned worker"] = measure.measure_model(*entries[0], target, settings)
    print(f"{names[0]} on {args.target}, settings_id {measure.settings_id(target, settings)}")
    for way, row in ways.items():
        print(f"  {way:>24}: memory_mb {row['memory_mb']:7.1f}  baseline_memory_mb {row['baseline_memory_mb']:7.1f}  "
              f"file-backed left out {row['file_memory_mb']:6.1f} MB  ({row['status']})")
    figures = [row["memory_mb"] for row in ways.values()]
    print(f"  spread: {(max(figures) - min(figures)) / min(figures):.1%} of the lowest")


if __name__ == "__main__":
    main()
