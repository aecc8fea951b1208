"""Exact rewrites of an exported graph for ONNX Runtime's CPU kernels: the same function, fewer milliseconds.

FOMM ends each network in a wide convolution (7x7) with few output channels: the keypoint heatmaps and
Jacobians, dense motion's masks and occlusion, the generator's RGB prediction. ONNX Runtime's blocked
convolution pads the outputs to its block of 8 or 16 channels, so a 3-channel 7x7 conv over a 128x128
frame ran at a fifth of the machine's matrix speed (7 ms of the shipped live model's 15 ms generator, a
2-core AMD EPYC). Two rewrites, both exact up to float rounding:
- sibling convolutions (one input, the same window) become one convolution and a Split: one pass over the
  input, one weight matrix (heatmaps + Jacobians: 4.8 -> 4.4 ms for the keypoint graph; masks + occlusion:
  8.0 -> 6.1 ms for the motion graph);
- a stride-1 convolution with few outputs becomes the transposed convolution with the flipped kernel,
  which ONNX Runtime computes as one tall matrix product and a col2im sum (the 3-channel 7x7 conv: 7.0 ->
  2.4 ms on that EPYC, 1 thread).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper

# a conv with at most this many outputs and a window of at least MIN_WINDOW a side is transposed. Measured
# on the live model's graphs (1 thread, 2-core AMD EPYC): the generator's 3-channel prediction 14.8 -> 9.6 ms
# for the whole render graph; dense motion's merged 12-channel masks + occlusion and the keypoints' 50-channel
# heatmaps + Jacobians ran slower transposed (6.1 -> 6.3 ms, 4.4 -> 5.2 ms), so they stay convolutions.
MAX_OUTPUTS = 4
MIN_WINDOW = 5


def _attributes(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _plain_window(node: onnx.NodeProto, weight: np.ndarray) -> tuple[int, ...] | None:
    """The conv's pads (begin..., end...) when it is a stride-1, undilated, ungrouped, explicitly padded 2-D
    convolution (what both rewrites handle); None otherwise."""
    attrs = _attributes(node)
    spatial = weight.ndim - 2
    if (weight.ndim != 4 or attrs.get("group", 1) != 1 or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or list(attrs.get("strides", [1] * spatial)) != [1] * spatial
            or list(attrs.get("dilations", [1] * spatial)) != [1] * spatial):
        return None
    return tuple(attrs.get("pads", [0] * 2 * spatial))


class _Graph:
    """A graph's initializers by name, and edits that keep its nodes in a valid order."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.graph = model.graph
        self.initializers = {t.name: t for t in self.graph.initializer}

    def array(self, name: str) -> np.ndarray | None:
        tensor = self.initializers.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def add(self, array: np.ndarray, name: str) -> str:
        tensor = numpy_helper.from_array(array, name)
        self.graph.initializer.append(tensor)
        self.initializers[name] = tensor
        return name

    def drop_unused(self) -> None:
        used = {name for node in self.graph.node for name in node.input}
        kept = [t for t in self.graph.initializer if t.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(kept)

    def conv_parts(self, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]] | None:
        """(weight, bias, pads) of a rewritable conv whose weight and bias are constants; None otherwise."""
        if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
            return None
        weight = self.array(node.input[1])
        if weight is None:
            return None
        bias = self.array(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(weight.shape[0], weight.dtype)
        if bias is None:
            return None
        pads = _plain_window(node, weight)
        return None if pads is None else (weight, bias, pads)


def merge_sibling_convs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Convolutions reading the same tensor with the same window become one convolution followed by a
    Split into the original outputs (in place; returns the model)."""
    graph = _Graph(model)
    siblings: dict[tuple, list[tuple[int, np.ndarray, np.ndarray]]] = defaultdict(list)
    for index, node in enumerate(graph.graph.node):
        parts = graph.conv_parts(node)
        if parts is not None:
            weight, bias, pads = parts
            siblings[(node.input[0], weight.shape[1:], pads)].append((index, weight, bias))
    replaced: dict[int, list[onnx.NodeProto]] = {}
    for (source, _, pads), convs in siblings.items():
        if len(convs) < 2:
            continue
        indices, weights, biases = zip(*convs)
        nodes = [graph.graph.node[i] for i in indices]
        name = f"{nodes[0].name or nodes[0].output[0]}_merged"
        weight = graph.add(np.concatenate(weights), f"{name}_weight")
        bias = graph.add(np.concatenate(biases), f"{name}_bias")
        sizes = graph.add(np.array([w.shape[0] for w in weights], np.int64), f"{name}_sizes")
        conv = helper.make_node("Conv", [source, weight, bias], [f"{name}_out"], name=name,
                                kernel_shape=list(weights[0].shape[2:]), pads=list(pads))
        split = helper.make_node("Split", [f"{name}_out", sizes], [n.output[0] for n in nodes], name=f"{name}_split", axis=1)
        replaced[indices[0]] = [conv, split]
        replaced.update({i: [] for i in indices[1:]})
    if replaced:
        nodes = [new for i, node in enumerate(graph.graph.node) for new in replaced.get(i, [node])]
        del graph.graph.node[:]
        graph.graph.node.extend(nodes)
        graph.drop_unused()
    return model


def transpose_narrow_convs(model: onnx.ModelProto, max_outputs: int = MAX_OUTPUTS,
                           min_window: int = MIN_WINDOW) -> onnx.ModelProto:
    """Each stride-1 convolution with at most max_outputs channels and a window of at least min_window a
    side becomes a ConvTranspose with the flipped kernel (in place; returns the model).

    Per axis, conv: out[y] = sum_d w[d] x[y + d - p]; ConvTranspose with kernel v and begin pad a:
    out[y] = sum_d v[d] x[y + a - d]; so v[d] = w[k-1-d] and a = k-1-p (likewise for the end pad)."""
    graph = _Graph(model)
    for node in graph.graph.node:
        parts = graph.conv_parts(node)
        if parts is None:
            continue
        weight, bias, pads = parts
        window = weight.shape[2:]
        if weight.shape[0] > max_outputs or min(window) < min_window:
            continue
        sides = len(window)
        new_pads = [window[i % sides] - 1 - p for i, p in enumerate(pads)]
        if min(new_pads) < 0:
            continue
        flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        name = node.name or node.output[0]
        inputs = [node.input[0], graph.add(flipped, f"{name}_transposed_weight"), graph.add(bias, f"{name}_transposed_bias")]
        replacement = helper.make_node("ConvTranspose", inputs, list(node.output), name=f"{name}_transposed",
                                       kernel_shape=list(window), pads=new_pads)
        node.CopyFrom(replacement)
    graph.drop_unused()
    return model


def rewrite_for_cpu(model: onnx.ModelProto) -> onnx.ModelProto:
    """Both rewrites, siblings first (the merged convolution may then be transposed)."""
    return transpose_narrow_convs(merge_sibling_convs(model))
