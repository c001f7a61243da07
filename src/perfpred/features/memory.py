"""Memory features of a described graph: peak live activation bytes (a liveness pass over the execution order)
and the im2col workspace of the largest convolution.

Peak memory of an inference process is the runtime's own footprint plus the weights plus what the
allocator holds at the worst moment: the tensors still to be read when a layer writes its output. A sum of
every layer's output (`activations`) or the largest one alone (`max_activation`) miss that: a residual
branch keeps its input alive across the branch, a chain frees each input once read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

BYTES_PER_ELEMENT = 4  # float32 activations
#: new feature columns of describe(), in output order
MEMORY_COLUMNS: tuple[str, ...] = ("weight_bytes", "peak_activation_bytes", "conv_workspace_bytes")


@dataclass
class Schedule:
    """Tensors in the order the graph computes them: per step, the tensor written, its elements and the tensors read."""

    written: list[tuple] = field(default_factory=list)
    elements: list[int] = field(default_factory=list)
    reads: list[list[tuple]] = field(default_factory=list)
    outputs: set = field(default_factory=set)

    def step(self, tensor: tuple, shape: tuple, reads: list[tuple]) -> None:
        """Record one layer call writing `tensor` (of `shape`) after reading `reads`."""
        self.written.append(tensor)
        self.elements.append(math.prod(shape) if shape else 1)
        self.reads.append(list(reads))


def peak_live_bytes(schedule: Schedule) -> int:
    """The largest sum of live tensor bytes over the schedule: a tensor lives from its write to its last read
    (graph outputs to the end); at each step the inputs being read and the output being written are both live."""
    last_read = {tensor: index for index, tensor in enumerate(schedule.written)}
    for index, reads in enumerate(schedule.reads):
        for tensor in reads:
            last_read[tensor] = max(last_read.get(tensor, index), index)
    end = len(schedule.written)
    for tensor in schedule.outputs:
        last_read[tensor] = end
    size = dict(zip(schedule.written, schedule.elements, strict=True))
    frees: dict[int, list] = {}
    for tensor, index in last_read.items():
        frees.setdefault(index, []).append(tensor)
    live = peak = 0
    for index, tensor in enumerate(schedule.written):
        live += size[tensor]
        peak = max(peak, live)
        live -= sum(size.get(t, 0) for t in frees.get(index, []))  # read for the last time: freed after this step
    return peak * BYTES_PER_ELEMENT


def conv_workspace_bytes(records: list[tuple], conv_classes: set[str]) -> int:
    """The im2col buffer of the largest convolution: output pixels x kernel area x input channels (per group)."""
    largest = 0
    for class_name, config, stats, inputs in records:
        if class_name not in conv_classes or stats.kernel is None or len(stats.shape) != 3 or len(inputs[0]) != 3:
            continue
        depthwise = class_name.startswith("Depthwise")
        channels = 1 if depthwise else inputs[0][-1] // int(config.get("groups", 1) or 1)
        pixels = stats.shape[0] * stats.shape[1]
        largest = max(largest, pixels * stats.kernel[0] * stats.kernel[1] * channels)
    return largest * BYTES_PER_ELEMENT


def descriptor_path(folder, model: str):
    """The descriptor of a measured network in a folder of `<model>_<width>.json` / `<model>.json` files, or None."""
    from pathlib import Path

    folder = Path(folder)
    exact = folder / f"{model}.json"
    if exact.exists():
        return exact
    sized = sorted(p for p in folder.glob(f"{model}_*.json") if p.stem[len(model) + 1:].isdigit())
    return sized[0] if sized else None


def descriptor_features(table, folder, check: str = "params", tolerance: float = 0.03):
    """MEMORY_COLUMNS of every row of a measurement table, described from its network's descriptor at the row's
    input width; NaN where the folder has no descriptor or the descriptor's `check` feature disagrees with the
    row's by more than `tolerance` (another network under the same name)."""
    import warnings

    import numpy as np
    import pandas as pd

    from perfpred.features.description import describe

    out = pd.DataFrame(np.nan, index=table.index, columns=list(MEMORY_COLUMNS))
    for (model, width), rows in table.groupby(["model", "input_width"], sort=False).groups.items():
        path = descriptor_path(folder, str(model))
        if path is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            features = describe(path, input_size=int(width))
        expected = float(table.loc[rows[0], check])
        if abs(features[check] - expected) > tolerance * max(abs(expected), 1.0):
            continue
        out.loc[rows, list(MEMORY_COLUMNS)] = [float(features[c]) for c in MEMORY_COLUMNS]
    return out
