"""A single-kernel ONNX export in the layout a model runs it in: NCHW, without the exporter's layout changes.

tf2onnx turns a Keras (NHWC) graph into ONNX's NCHW by wrapping it in Transposes: NHWC -> NCHW after each input,
NCHW -> NHWC before each output. Inside a model those cancel out between layers and only the first and last remain,
on small tensors; a one-kernel model pays both around its one kernel, on its full input and output. Measured here
(ORT 1.23, one thread): a 1x1 convolution on 160x160x64 alone is Transpose, Conv, Relu, Transpose in 2.88 ms, three
in a row 6.92 ms, so each transpose of 6.5 MB costs ~0.43 ms, a share the kernel does not pay inside a model. A lone
global pool exports as ReduceMean over NHWC's H and W (1.44 ms at 160x160x64), where a model runs GlobalAveragePool
on NCHW; a lone concatenation joins NHWC's last axis, a model NCHW's channel axis.

`to_nchw` rewrites such a graph (only where a graph input or output meets the layout change; nothing else moves):
- a graph input read only by Transposes with perm (0, 3, 1, 2) becomes an NCHW input, the Transposes go;
- a graph output written by a Transpose with perm (0, 2, 3, 1) becomes that Transpose's NCHW input;
- ReduceMean / ReduceMax over axes (1, 2) of a 4-d graph input become GlobalAveragePool / GlobalMaxPool on an
  NCHW input (then Squeeze, as a model's export has it, when keepdims is 0);
- a Concat on the last axis of 4-d graph inputs becomes a Concat on axis 1 of NCHW inputs.
`check` proves the rewritten graph computes the original on the same data (inputs and 4-d outputs transposed).
"""

from __future__ import annotations

import numpy as np

TO_NCHW = [0, 3, 1, 2]
TO_NHWC = [0, 2, 3, 1]
GLOBAL_POOLS = {"ReduceMean": "GlobalAveragePool", "ReduceMax": "GlobalMaxPool"}


def _attribute(node, name, default=None):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _set_nchw(value) -> None:
    """An NHWC 4-d value_info's shape made NCHW in place."""
    dims = list(value.type.tensor_type.shape.dim)
    copies = [type(d)() for d in dims]
    for copy, d in zip(copies, dims, strict=True):
        copy.CopyFrom(d)
    for position, source in enumerate(TO_NCHW):
        dims[position].CopyFrom(copies[source])


def _rank(value) -> int:
    return len(value.type.tensor_type.shape.dim)


def to_nchw(model):
    """The model rewritten as described in the module's docstring, and the names of the graph inputs and outputs
    it made NCHW.

    Returns (model, changed); changed empty and the model untouched when nothing applies.
    """
    import onnx
    from onnx import helper

    graph = model.graph
    initialized = {i.name for i in graph.initializer}
    inputs = {value.name: value for value in graph.input if value.name not in initialized}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    changed: set[str] = set()
    outputs_nchw: list[str] = []
    drop, add = [], []
    rename: dict[str, str] = {}
    for name, value in inputs.items():
        if _rank(value) != 4 or not readers.get(name):
            continue
        nodes = readers[name]
        if all(n.op_type == "Transpose" and list(_attribute(n, "perm", [])) == TO_NCHW for n in nodes):
            for n in nodes:
                rename[n.output[0]] = name
                drop.append(n)
            changed.add(name)
        elif len(nodes) == 1 and nodes[0].op_type in GLOBAL_POOLS and list(_attribute(nodes[0], "axes", [])) == [1, 2]:
            node = nodes[0]
            pooled = node.output[0] + "__nchw_pool"
            keep = int(_attribute(node, "keepdims", 1))
            if keep:
                add.append(helper.make_node(GLOBAL_POOLS[node.op_type], [name], [pooled]))
                add.append(helper.make_node("Transpose", [pooled], [node.output[0]], perm=TO_NHWC))  # 1x1: a view
            else:
                axes = node.output[0] + "__nchw_axes"
                graph.initializer.append(onnx.numpy_helper.from_array(np.array([2, 3], dtype=np.int64), axes))
                add.append(helper.make_node(GLOBAL_POOLS[node.op_type], [name], [pooled]))
                add.append(helper.make_node("Squeeze", [pooled, axes], [node.output[0]]))
            drop.append(node)
            changed.add(name)
    for node in graph.node:  # a Concat on NHWC's channel axis whose every input is a graph input
        if (node.op_type == "Concat" and int(_attribute(node, "axis", 0)) in (3, -1)
                and all(i in inputs and _rank(inputs[i]) == 4 and len(readers[i]) == 1 for i in node.input)):
            for attribute in node.attribute:
                if attribute.name == "axis":
                    attribute.i = 1
            changed.update(node.input)
            if node.output[0] in {value.name for value in graph.output}:
                outputs_nchw.append(node.output[0])
    producers = {node.output[0]: node for node in graph.node if node.output}
    for value in graph.output:
        node = producers.get(value.name)
        if node is not None and node.op_type == "Transpose" and list(_attribute(node, "perm", [])) == TO_NHWC \
                and node not in drop and len(readers.get(value.name, [])) == 0:
            rename_output = node.input[0]
            drop.append(node)
            for other in graph.node:  # the value the Transpose read is written under the output's name
                for position, name in enumerate(other.output):
                    if name == rename_output:
                        other.output[position] = value.name
                for position, name in enumerate(other.input):
                    if name == rename_output and other is not node:
                        other.input[position] = value.name
            outputs_nchw.append(value.name)
    if not changed and not outputs_nchw:
        return model, set()
    kept = [node for node in graph.node if all(node is not d for d in drop)]
    for node in kept:
        for position, name in enumerate(node.input):
            if name in rename:
                node.input[position] = rename[name]
    del graph.node[:]
    graph.node.extend(add + kept)
    for name in changed:
        _set_nchw(inputs[name])
    for value in graph.output:  # inferred again below
        value.type.tensor_type.ClearField("shape")
    del graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return model, changed | set(outputs_nchw)


def check(original: str, rewritten: str, changed: set[str], seed: int = 0, tolerance: float = 1e-4) -> None:
    """Refuse a rewrite whose outputs differ from the original's on the same data (raises RuntimeError).

    `changed`: what to_nchw made NCHW (inputs fed transposed, outputs compared transposed back)."""
    from perfpred.measure.onnx_runtime import _feeds, _session

    before, after = _session(original, 1), _session(rewritten, 1)
    feeds = _feeds(before, None, seed)  # batch 1; a kernel's export has no other unknown dimension
    expected = before.run(None, feeds)
    got = after.run(None, {k: np.ascontiguousarray(x.transpose(TO_NCHW)) if k in changed else x
                           for k, x in feeds.items()})
    for name, want, have in zip([o.name for o in before.get_outputs()], expected, got, strict=True):
        if name in changed:
            have = have.transpose(TO_NHWC)
        scale = float(np.max(np.abs(want))) or 1.0
        error = float(np.max(np.abs(have - want))) / scale if have.shape == want.shape else np.inf
        if not error <= tolerance:
            raise RuntimeError(f"the NCHW rewrite of {original} does not compute output {name!r} as the export does "
                               f"(relative error {error:.3g})")
