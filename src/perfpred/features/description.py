"""`perfpred describe`: model-level features of a Keras descriptor or an ONNX file, computed without building the model."""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

from perfpred.data.schema import FEATURE_COLUMNS
from perfpred.features import descriptors, memory, onnx_graph, onnx_loading, rules, shapes, weighted
from perfpred.features.descriptors import DescriptorError, Graph

CONV_CLASSES = {"Conv2D", "Convolution2D", "Conv2DTranspose", "Deconvolution2D", "DepthwiseConv2D",
                "SeparableConv2D", "SeparableConvolution2D"}
BN_CLASSES = {"BatchNormalization"}
FC_CLASSES = {"Dense"}
#: extra features beyond schema.FEATURE_COLUMNS, in output order
EXTRA_COLUMNS: tuple[str, ...] = (
    "input_width", "conv_1x1_layers", "conv_3x3_layers", "conv_5x5_plus_layers", "depthwise_layers",
    "separable_layers", "pool_layers", "merge_layers", "lambda_layers", "max_activation", "param_bytes",
    *memory.MEMORY_COLUMNS, "approximate",
)
BYTES_PER_PARAM = 4  # float32 weights


def describe(source, input_size: int | None = None) -> dict:
    """Model-level features (schema.FEATURE_COLUMNS + EXTRA_COLUMNS) of a Keras JSON, .keras file, keras.Model or ONNX file."""
    table = None
    if onnx_loading.is_onnx_file(source):
        return onnx_graph.describe_onnx(source, input_size)
    if hasattr(source, "to_json") and not isinstance(source, str | Path):
        graph = descriptors.parse(json.loads(source.to_json()), getattr(source, "name", "<keras.Model>"))
    else:
        graph = descriptors.load(source)
        if not isinstance(source, dict) and any(layer.class_name == "Lambda" for layer in graph.layers):
            table = descriptors.layer_table(Path(source))
    return _Walk(graph, input_size, table).features()


class _Walk:
    """Shape inference over one graph (and its nested models), accumulating the features."""

    def __init__(self, graph: Graph, input_size: int | None, table: dict | None, native: bool = False):
        self.graph, self.input_size, self.table, self.native = graph, input_size, table, native
        self._lambda_reference: dict | None = None
        self.lambda_inputs: dict[str, tuple] = {}  # Lambda name -> (input shape, output shape) seen
        self.totals = dict.fromkeys(FEATURE_COLUMNS, 0) | dict.fromkeys(EXTRA_COLUMNS[1:-1], 0)
        self.schedule = memory.Schedule()  # tensors in execution order, for the liveness pass
        self.approximate = False
        self.regularizers = weighted.builds_regularizers(graph.keras_version)  # penalties in the graph
        self.retargeted = False  # the input size differs from the descriptor's own
        self.input_width = None
        self.layer_shapes: dict[str, list] = {}  # layer name -> output shape of its first call
        self.records: list[tuple] = []  # (class name, config, stats) of every counted layer, in walk order

    def features(self) -> dict:
        outputs = self.run(self.graph, None)
        if not outputs:
            raise DescriptorError(f"{self.graph.source}: the model has no outputs")
        self.schedule.outputs = {(id(self.graph), ref.layer, ref.node, ref.tensor) for ref in self.graph.outputs}
        weight_bytes = self.totals["params"] * BYTES_PER_PARAM
        totals = self.totals | {"neurons": self.neurons(), "input_width": self.input_width,
                                "param_bytes": weight_bytes, "weight_bytes": weight_bytes,
                                "peak_activation_bytes": memory.peak_live_bytes(self.schedule),
                                "conv_workspace_bytes": memory.conv_workspace_bytes(self.records, CONV_CLASSES),
                                "approximate": self.approximate}
        return {column: totals[column] for column in ("input_width", *FEATURE_COLUMNS, *EXTRA_COLUMNS[1:])}

    def neurons(self) -> int:
        """Weighted neurons as the data's source computed them, from its per-layer table.

        Its 'input channels' (and SeparableConv2D's input width) are those of the layer listed just
        before in the descriptor, which is the real input in a plain chain but not after a branch; its
        'kernel height x width' is the kernel width squared (Inception's 1x7 and 7x1 convolutions show
        it); a SeparableConv2D's input channels are those the last other convolution read (a value left
        over from that layer: Xception's per-stage sums show it); a Dense layer counts the elements of
        its input and output, so one applied to a H x W x C tensor counts (H*W*C) * (H*W*units)
        (DenseNet-161's head).
        """
        total = 0
        previous = conv_channels = None
        for class_name, config, stats, inputs in self.records:
            before = previous if previous is not None and len(previous) == len(inputs[0]) else inputs[0]
            previous = stats.shape
            if class_name in FC_CLASSES:
                total += shapes.elements(before) * shapes.elements(stats.shape)
            elif class_name.startswith("Separable"):
                k, w_in, w_out = stats.kernel[0], before[1], stats.shape[1]
                channels = before[-1] if conv_channels is None else conv_channels
                total += (w_in * w_out * k * channels + w_out * w_out * k * channels) * stats.shape[-1]
            elif class_name in CONV_CLASSES:
                conv_channels = before[-1]
                groups = int(config.get("groups", 1) or 1)
                total += shapes.elements(stats.shape) * stats.kernel[1] ** 2 * before[-1] // groups
        return total

    def run(self, graph: Graph, input_shapes: list | None) -> list:
        """Infer every layer of `graph` (in descriptor order, which Keras writes topologically)."""
        produced: dict[tuple[str, int], list] = {}
        done = dict.fromkeys((layer.name for layer in graph.layers), 0)  # calls inferred so far, per layer
        pending = list(graph.layers)
        while pending:
            waiting, before = [], sum(done.values())
            for layer in pending:
                if layer.class_name == "InputLayer":
                    names = [ref.layer for ref in graph.inputs]
                    given = input_shapes[names.index(layer.name) if layer.name in names else 0] if input_shapes else None
                    produced[(layer.name, 0)] = [self.input_layer(graph, layer, given)]
                    self.schedule.step((id(graph), layer.name, 0, 0), () if given else produced[(layer.name, 0)][0], [])
                    continue
                # a shared layer's later calls may read its own earlier outputs: infer call by call
                for node in range(done[layer.name], len(layer.calls)):
                    call = layer.calls[node]
                    if any((ref.layer, ref.node) not in produced for ref in call):
                        break
                    inputs = [produced[(ref.layer, ref.node)][ref.tensor] for ref in call]
                    produced[(layer.name, node)] = self.call(graph, layer, inputs, count=node == 0)
                    reads = [(id(graph), ref.layer, ref.node, ref.tensor) for ref in call]
                    for index, shape in enumerate(produced[(layer.name, node)]):
                        self.schedule.step((id(graph), layer.name, node, index), shape, reads if index == 0 else [])
                    done[layer.name] = node + 1
                if done[layer.name] < len(layer.calls):
                    waiting.append(layer)
            if waiting and sum(done.values()) == before and len(waiting) == len(pending):
                names = ", ".join(f"{layer.name!r}" for layer in waiting[:5])
                raise DescriptorError(f"{graph.source}: layers {names} read tensors no layer produces (a cycle?)")
            pending = waiting
        return [produced[(ref.layer, ref.node)][ref.tensor] for ref in graph.outputs if (ref.layer, ref.node) in produced]

    def input_layer(self, graph: Graph, layer, given) -> tuple:
        config = layer.config
        shape = given or tuple((config.get("batch_shape") or config.get("batch_input_shape"))[1:])
        if given is None and graph is self.graph:
            if len(shape) == 3 and self.input_size is not None:
                self.retargeted = self.retargeted or shape[:2] != (self.input_size, self.input_size)
                shape = (self.input_size, self.input_size, shape[2])
            if any(d is None for d in shape):
                raise DescriptorError(
                    f"{graph.source}: input layer {layer.name!r} has unknown dimensions {shape}: "
                    "give the input width with --input-size (input_size= in Python)"
                )
            self.input_width = self.input_width or (shape[1] if len(shape) == 3 else None)
            self.totals["input_size"] += math.prod(shape)
        stats = shapes.LayerStats(tuple(shape))
        self.add(layer.name, "InputLayer", stats, graph, count=given is None)
        if given is None:
            self.records.append(("InputLayer", config, stats, [stats.shape]))
        return tuple(shape)

    def call(self, graph: Graph, layer, inputs: list, count: bool) -> list:
        where = f"{graph.source}: layer {layer.name!r} ({layer.class_name})"
        if layer.inner is not None:  # a nested model: its layers count as this model's layers
            return self.run(layer.inner, inputs)
        if layer.class_name == "Lambda":
            stats = self.lambda_stats(graph, layer, inputs)
            self.lambda_inputs[layer.name] = (inputs[0], stats.shape)
        else:
            rule = rules.RULES.get(layer.class_name)
            if rule is None:
                raise DescriptorError(f"{where}: unknown layer class {layer.class_name!r}; perfpred has no shape rule for it")
            if not inputs:
                raise DescriptorError(f"{where}: the layer has no inputs")
            config = layer.config
            if config.get("data_format") == "channels_first":
                raise DescriptorError(f"{where}: data_format 'channels_first' is not supported; export the model "
                                      "channels-last (Keras' default)")
            if self.retargeted and layer.class_name == "ZeroPadding2D":
                config = shapes.same_padding(config, inputs[0])
            try:
                stats = rule(config, inputs)
            except (KeyError, TypeError, IndexError) as error:
                raise DescriptorError(f"{where}: unreadable config ({type(error).__name__}: {error})") from None
            except shapes.LayerError as error:
                raise DescriptorError(f"{where}: {error}") from None
            if self.regularizers:
                stats.flops += weighted.regularizer_flops(config, stats.weights)
        if any(d <= 0 for d in stats.shape):
            raise DescriptorError(
                f"{where}: output shape {stats.shape} from input {inputs[0]}: the input size is too small for this "
                "architecture; use a larger input_size"
            )
        self.add(layer.name, layer.class_name, stats, graph, count=count)
        if count:
            self.records.append((layer.class_name, layer.config, stats, inputs))
        return [stats.shape]

    def lambda_stats(self, graph: Graph, layer, inputs: list) -> shapes.LayerStats:
        """A Lambda's output shape from the layer table beside the descriptor (its code is never run)."""
        current = inputs[0]
        flops = 2 * shapes.elements(current) if len(inputs) > 1 else 0  # e.g. a scaled residual x + s * y
        reference = self.lambda_reference().get(layer.name) if graph is self.graph else None
        if reference is None:
            self.approximate = True
            warnings.warn(f"{graph.source}: Lambda layer {layer.name!r} has no layer table row: its input shape is kept",
                          stacklevel=3)
            return shapes.LayerStats(current, 0, flops)
        was_in, was_out = reference
        if current == was_in or was_in is None:
            return shapes.LayerStats(was_out, 0, flops)
        if was_out == was_in:
            return shapes.LayerStats(current, 0, flops)
        if len(was_in) == len(was_out) == len(current) == 3:
            # another input size: spatial dimensions scale as in the table, channels are the table's
            scaled = []
            for i in (0, 1):
                exact = current[i] * was_out[i] / was_in[i]
                if exact != int(exact):
                    self.approximate = True
                scaled.append(max(round(exact), 1))
            return shapes.LayerStats((*scaled, was_out[2]), 0, flops)
        if len(was_out) < 3 or was_out[:-1] == (1,) * (len(was_out) - 1):
            return shapes.LayerStats(was_out, 0, flops)  # vectors and 1x1xC do not depend on the input size
        self.approximate = True
        return shapes.LayerStats(was_out, 0, flops)

    def lambda_reference(self) -> dict[str, tuple]:
        """Lambda name -> (input shape, output shape) at the layer table's input size.

        The table's own input_shape column repeats the previous row's output, so the true input shape
        comes from a walk of the graph at the table's size.
        """
        if self._lambda_reference is None:
            self._lambda_reference = {}
            if self.table:
                native = {name: row["output_shape"] for name, row in self.table.items() if row["class_name"] == "Lambda"}
                table_input = next((row["output_shape"] for row in self.table.values()
                                    if row["class_name"] == "InputLayer"), None)
                if self.native or self.input_size is None or (table_input or (None,))[0] == self.input_size:
                    self._lambda_reference = {name: (None, shape) for name, shape in native.items()}
                else:
                    walk = _Walk(self.graph, None, self.table, native=True)
                    walk.run(walk.graph, None)
                    self._lambda_reference = walk.lambda_inputs
        return self._lambda_reference

    def add(self, name: str, class_name: str, stats: shapes.LayerStats, graph: Graph, count: bool) -> None:
        if class_name == "InputLayer" and graph is not self.graph:
            return  # a nested model's input is its caller's tensor, already counted
        totals = self.totals
        self.layer_shapes.setdefault(name, stats.shape)
        totals["flops"] += stats.flops
        totals["activations"] += shapes.elements(stats.shape)
        totals["max_activation"] = max(totals["max_activation"], shapes.elements(stats.shape))
        if not count:
            return
        totals["layers"] += 1
        totals["params"] += stats.params
        if class_name in CONV_CLASSES:
            totals["conv_layers"] += 1
            totals["conv_params"] += stats.params
            size = max(stats.kernel)
            key = "conv_1x1_layers" if size == 1 else "conv_3x3_layers" if size == 3 else "conv_5x5_plus_layers" if size >= 5 else None
            if key:
                totals[key] += 1
            totals["depthwise_layers"] += class_name == "DepthwiseConv2D"
            totals["separable_layers"] += class_name.startswith("Separable")
        elif class_name in BN_CLASSES:
            totals["bn_layers"] += 1
            totals["bn_params"] += stats.params
        elif class_name in FC_CLASSES:
            totals["fc_layers"] += 1
            totals["fc_params"] += stats.params
        totals["pool_layers"] += "Pool" in class_name
        totals["merge_layers"] += class_name in {"Add", "Multiply", "Concatenate", "Average", "Subtract", "Maximum"}
        totals["lambda_layers"] += class_name == "Lambda"


def layer_shapes(source, input_size: int | None = None) -> dict[str, tuple]:
    """Output shape (batch excluded) of every layer of a descriptor, by layer name."""
    graph = descriptors.load(source)
    walk = _Walk(graph, input_size, descriptors.layer_table(Path(source)))
    walk.run(graph, None)
    return walk.layer_shapes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `perfpred describe`."""
    parser.add_argument("model", help="a Keras model descriptor (.json, Keras 2 or 3; .keras) or an ONNX model (.onnx)")
    parser.add_argument("--input-size", type=int, default=None, metavar="N", help="re-target the input to N x N x 3")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    """Print the features of one descriptor."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        features = describe(args.model, args.input_size)
    if args.json:
        print(json.dumps(features))
    else:
        width = max(len(name) for name in features)
        for name, value in features.items():
            text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
            print(f"{name:<{width}}  {text:>18}")
    for warning in caught[:3]:
        print(f"warning: {warning.message}", file=sys.stderr)
    if len(caught) > 3:
        print(f"warning: {len(caught) - 3} more Lambda layers without a layer table row", file=sys.stderr)
    return 0
