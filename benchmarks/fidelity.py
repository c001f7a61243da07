"""Fidelity of perfpred.describe against the Jetson dataset's own features.

For every descriptor in data/raw/jetson-bouzidi/architectures/: features at its own input size and at
up to N other sizes measured for that network (latency files, then power files), worst relative error
per feature, and the number of layers whose inferred output shape differs from the per-layer table.

    python benchmarks/fidelity.py [--sizes 2] [--markdown]
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import warnings
from pathlib import Path

from perfpred import config
from perfpred.features import descriptors
from perfpred.features.description import describe, layer_shapes

LAYOUT_A = ("input_width", "input_size", "conv_params", "bn_params", "fc_params", "flops", "layers", "conv_layers",
            "bn_layers", "fc_layers", "activations", "neurons")
COMPARED = ("conv_params", "bn_params", "fc_params", "layers", "conv_layers", "bn_layers", "fc_layers", "flops",
            "activations", "neurons")
#: relative tolerance per feature (the task's acceptance criteria)
TOLERANCE = dict.fromkeys(COMPARED, 0.0) | {"activations": 0.01, "neurons": 0.01, "flops": 0.03}


def dataset_rows(root: Path) -> dict[str, list[dict]]:
    """Network name -> feature rows of the latency files, then the power files (layout A)."""
    rows: dict[str, list[dict]] = {}
    for folder in ("latency", "power"):
        for path in sorted((root / folder).glob("*.csv")):
            with path.open(newline="") as handle:
                for record in csv.reader(handle):
                    rows.setdefault(record[0], []).append(dict(zip(LAYOUT_A, map(float, record[3:]), strict=True)))
    return rows


def network_name(descriptor: Path) -> str:
    """'ResNet-50_224.json' -> 'ResNet-50'; synthetic networks keep their whole stem."""
    stem = descriptor.stem
    return stem if stem.startswith("basic_model") else stem.rsplit("_", 1)[0]


def matching_rows(rows: list[dict], native: dict) -> list[dict]:
    """Rows of the same network: same layer count and parameters (names are not unique for basic_model_*)."""
    return [row for row in rows if row["layers"] == native["layers"] and row["conv_params"] == native["conv_params"]]


def shape_mismatches(descriptor: Path) -> int:
    """Layers whose inferred output shape differs from the per-layer table at the table's size."""
    table = descriptors.layer_table(descriptor) or {}
    inferred = layer_shapes(descriptor)
    return sum(1 for name, row in table.items() if row["output_shape"] != tuple(inferred.get(name, ())))


#: the columns that depend only on the network's weights, not on the input size
PARAMETER_COLUMNS = ("conv_params", "bn_params", "fc_params", "conv_layers", "bn_layers")


def parameter_donors(row: dict, rows: dict[str, list[dict]], network: str) -> list[str]:
    """Other networks whose rows carry exactly this row's parameter columns."""
    key = tuple(row[c] for c in PARAMETER_COLUMNS)
    return sorted(name for name, entries in rows.items() if name != network
                  and any(tuple(r[c] for c in PARAMETER_COLUMNS) == key for r in entries))


def table_activations(descriptor: Path) -> int | None:
    """Sum of the output sizes in the per-layer table (the data's own definition of activations)."""
    table = descriptors.layer_table(descriptor)
    return sum(math.prod(row["output_shape"] or (0,)) for row in table.values()) if table else None


def fidelity(descriptor: Path, rows: dict[str, list[dict]], other_sizes: int = 2) -> dict:
    """Worst relative error per feature over the native size and `other_sizes` more sizes.

    When no row has the descriptor's structure but rows of that name have its layer count, they are
    compared anyway and `donors` names the networks whose parameter columns those rows carry.
    """
    native = describe(descriptor)
    network = network_name(descriptor)
    named = rows.get(network, [])
    candidates = matching_rows(named, native)
    donors: list[str] = []
    if not candidates:
        candidates = [row for row in named if row["layers"] == native["layers"]]
        donors = parameter_donors(candidates[0], rows, network) if candidates else []
    widths = sorted({int(row["input_width"]) for row in candidates} - {native["input_width"]})
    chosen = [native["input_width"]] + [widths[i * (len(widths) - 1) // max(other_sizes - 1, 1)]
                                        for i in range(min(other_sizes, len(widths)))]
    result = {"architecture": descriptor.stem, "rows": len(candidates), "sizes": sorted(set(chosen)),
              "shape_mismatches": shape_mismatches(descriptor), "donors": donors}
    worst = dict.fromkeys(COMPARED, None)
    native_row = None
    for width in result["sizes"]:
        mine = describe(descriptor, input_size=width)
        for row in (r for r in candidates if r["input_width"] == width):
            native_row = row if width == native["input_width"] else native_row
            for feature in COMPARED:
                if row[feature] == 0 and mine[feature] == 0:
                    error = 0.0
                else:
                    error = abs(mine[feature] - row[feature]) / max(abs(row[feature]), 1.0)
                worst[feature] = max(worst[feature] or 0.0, error)
            break
    result |= worst
    notes = []
    if not named:
        notes.append("network not in the data")
    elif not candidates:
        notes.append(f"no row with this structure: data has conv_params "
                     f"{sorted({int(r['conv_params']) for r in named})[:2]}, descriptor {native['conv_params']}")
    elif donors:
        notes.append(f"data rows carry the parameter columns of {', '.join(donors)} (descriptor conv_params "
                     f"{native['conv_params']}, rows {int(candidates[0]['conv_params'])})")
    own = table_activations(descriptor)
    if native_row and own == native["activations"] and abs(native_row["activations"] / own - 1) > TOLERANCE["activations"]:
        notes.append(f"data activations {int(native_row['activations'])} contradict the layer table's sum {own}")
    result["note"] = "; ".join(notes)
    result["ok"] = bool(candidates) and not donors and result["shape_mismatches"] == 0 and all(
        worst[f] is not None and worst[f] <= TOLERANCE[f] for f in COMPARED)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, default=2, help="other input sizes per network (default 2)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    root = config.path("jetson_dataset", config.load_params())
    rows = dataset_rows(root)
    header = ["architecture", "rows", "sizes", "shape_mismatches", *COMPARED, "ok", "note"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    failures = 0
    for descriptor in sorted((root / "architectures").glob("*.json")):
        result = fidelity(descriptor, rows, args.sizes)
        failures += not result["ok"]
        cells = [f"{result[k]:.2%}" if isinstance(result[k], float) else ("-" if result[k] is None else str(result[k]))
                 for k in header]
        print("| " + " | ".join(cells) + " |")
    print(f"\n{failures} architectures outside tolerance (counts/params exact, activations/neurons 1%, flops 3%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
