"""Kernel detection on ONNX exports against the Keras originals: same kernel kinds, in the same order?

For each ONNX export in a folder (the measure stage's cache, `<model>-<hash>.onnx`) whose Keras descriptor is
in the zoo folder, detect the kernels of both under each target's fusion rules and compare: the kinds in
order, the counts per kind, each kernel's configuration (shapes, channels, kernel size, strides, groups,
inputs) where the order agrees, total FLOPs and bytes. Prints one line per (model, target) and a summary; reads
the files only.

    python benchmarks/kernels_onnx_agreement.py --onnx /work/main/.cache/onnx/host-cpu-onnxruntime \\
        --zoo /work/main/data/zoo/models --target host-cpu-tf --target host-cpu-tflite [--limit N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from perfpred.kernels import detector


def _configuration(kernel) -> tuple:
    return (kernel.kind, tuple(kernel.input_shape), tuple(kernel.output_shape), kernel.cin, kernel.cout,
            kernel.kernel_size, kernel.strides, kernel.groups, kernel.inputs)


def compare(onnx_path: Path, descriptor: Path, target: str) -> dict:
    """Agreement figures of one export under one target's rules."""
    exported, original = detector.detect(onnx_path, target), detector.detect(descriptor, target)
    counts_onnx, counts_keras = detector.totals(exported), detector.totals(original)
    differing = {kind: [counts_onnx[kind], counts_keras[kind]] for kind in detector.KINDS
                 if counts_onnx[kind] != counts_keras[kind]}
    same_order = [k.kind for k in exported] == [k.kind for k in original]
    configured = sum(_configuration(mine) == _configuration(theirs) for mine, theirs in zip(exported, original, strict=False))
    return {"model": descriptor.stem, "target": target, "same_order": same_order,
            "same_configurations": same_order and configured == len(original),
            "same_counts": not differing, "differing": differing, "kernels": [len(exported), len(original)],
            "flops_ratio": counts_onnx["flops"] / max(counts_keras["flops"], 1),
            "bytes_ratio": counts_onnx["bytes"] / max(counts_keras["bytes"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, required=True, help="folder of <model>-<hash>.onnx exports")
    parser.add_argument("--zoo", type=Path, required=True, help="folder of the Keras descriptors <model>.json")
    parser.add_argument("--target", action="append", default=None, help="fusion rules (repeatable)")
    parser.add_argument("--limit", type=int, default=None, help="only the N smallest files")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args()
    targets = args.target or ["host-cpu-tf", "host-cpu-tflite"]
    files = sorted(args.onnx.glob("*.onnx"), key=lambda path: path.stat().st_size)[: args.limit]
    rows = []
    for path in files:
        descriptor = args.zoo / f"{path.stem.rsplit('-', 1)[0]}.json"
        if not descriptor.exists():
            continue
        for target in targets:
            try:
                row = compare(path, descriptor, target)
            except Exception as error:  # noqa: BLE001 (a benchmark reports every failure and goes on)
                row = {"model": descriptor.stem, "target": target, "error": f"{type(error).__name__}: {error}"[:200]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    done = [row for row in rows if "error" not in row]
    for target in targets:
        mine = [row for row in done if row["target"] == target]
        if not mine:
            continue
        flops = max(abs(row["flops_ratio"] - 1) for row in mine)
        byte = max(abs(row["bytes_ratio"] - 1) for row in mine)
        print(f"{target}: {len(mine)} models; same kinds in the same order {sum(r['same_order'] for r in mine)}, "
              f"same counts per kind {sum(r['same_counts'] for r in mine)}, every kernel's configuration the same "
              f"{sum(r['same_configurations'] for r in mine)}; FLOPs within {100 * flops:.2f}%, "
              f"bytes within {100 * byte:.2f}%; errors {sum(r['target'] == target for r in rows) - len(mine)}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
