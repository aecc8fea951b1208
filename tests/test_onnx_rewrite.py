"""The CPU rewrites of exported graphs (export/onnx_rewrite.py) against a convolution computed from its
definition with numpy loops: the rewritten graph must compute the same function, and convolutions the
rewrites do not handle must stay as they were."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.onnx_rewrite import merge_sibling_convs, rewrite_for_cpu, transpose_narrow_convs


def naive_conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, pads: tuple[int, int, int, int],
               stride: int = 1) -> np.ndarray:
    """out[o, y, x] = b[o] + sum_{i, dy, dx} w[o, i, dy, dx] * xpad[i, y*s + dy, x*s + dx] (batch 1)."""
    top, left, bottom, right = pads[0], pads[1], pads[2], pads[3]
    padded = np.pad(x[0], ((0, 0), (top, bottom), (left, right)))
    outs, _, kh, kw = weight.shape
    height = (padded.shape[1] - kh) // stride + 1
    width = (padded.shape[2] - kw) // stride + 1
    out = np.zeros((outs, height, width))
    for o in range(outs):
        for y in range(height):
            for x_ in range(width):
                window = padded[:, y * stride:y * stride + kh, x_ * stride:x_ * stride + kw]
                out[o, y, x_] = bias[o] + float((window * weight[o]).sum())
    return out[None]


def conv_model(convs: list[dict], channels: int = 4, size: int = 9) -> onnx.ModelProto:
    """A graph of convolutions all reading input x, each output a graph output. Each dict: weight, bias,
    pads, and optional strides / group."""
    nodes, inits, outputs = [], [], []
    for i, spec in enumerate(convs):
        inits += [numpy_helper.from_array(spec["weight"], f"w{i}"), numpy_helper.from_array(spec["bias"], f"b{i}")]
        attrs = {"kernel_shape": list(spec["weight"].shape[2:]), "pads": list(spec["pads"])}
        attrs.update({k: spec[k] for k in ("strides", "group") if k in spec})
        nodes.append(helper.make_node("Conv", ["x", f"w{i}", f"b{i}"], [f"y{i}"], name=f"conv{i}", **attrs))
        (outs, _, *window), pads, step = spec["weight"].shape, spec["pads"], spec.get("strides", [1])[0]
        side = [(size + pads[a] + pads[a + 2] - window[a]) // step + 1 for a in (0, 1)]
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [1, outs, *side]))
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


def spec(rng: np.random.Generator, outs: int, ins: int, window: int, pads: tuple[int, ...], **extra) -> dict:
    return {"weight": rng.normal(size=(outs, ins, window, window)).astype(np.float32),
            "bias": rng.normal(size=outs).astype(np.float32), "pads": pads, **extra}


def ops(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


@pytest.mark.parametrize("pads, window", [((3, 3, 3, 3), (7, 7)), ((0, 0, 0, 0), (7, 7)), ((1, 2, 3, 0), (7, 7)),
                                          ((1, 2, 3, 4), (5, 7))])
def test_narrow_conv_becomes_transposed_conv_with_same_output(pads, window):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 4, 9, 9)).astype(np.float32)
    conv = spec(rng, 3, 4, 7, pads)
    conv["weight"] = conv["weight"][:, :, :window[0], :window[1]].copy()
    model = transpose_narrow_convs(conv_model([conv]))
    assert ops(model) == ["ConvTranspose"]
    (out,) = run(model, x)
    np.testing.assert_allclose(out, naive_conv(x, conv["weight"], conv["bias"], pads), atol=1e-4)


def test_sibling_convs_merge_into_one_conv_and_a_split():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 4, 9, 9)).astype(np.float32)
    first, second = spec(rng, 5, 4, 3, (1, 1, 1, 1)), spec(rng, 2, 4, 3, (1, 1, 1, 1))
    other = spec(rng, 3, 4, 3, (0, 0, 0, 0))  # another window: not a sibling
    model = merge_sibling_convs(conv_model([first, second, other]))
    assert sorted(ops(model)) == ["Conv", "Conv", "Split"]
    outs = run(model, x)
    for out, conv in zip(outs, (first, second, other)):
        np.testing.assert_allclose(out, naive_conv(x, conv["weight"], conv["bias"], conv["pads"]), atol=1e-4)
    assert {t.name for t in model.graph.initializer} >= {"w2", "b2"} and "w0" not in {t.name for t in model.graph.initializer}


def test_merged_narrow_siblings_are_transposed_too():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 4, 9, 9)).astype(np.float32)
    masks, occlusion = spec(rng, 2, 4, 5, (2, 2, 2, 2)), spec(rng, 1, 4, 5, (2, 2, 2, 2))
    model = rewrite_for_cpu(conv_model([masks, occlusion]))
    assert ops(model) == ["ConvTranspose", "Split"]
    for out, conv in zip(run(model, x), (masks, occlusion)):
        np.testing.assert_allclose(out, naive_conv(x, conv["weight"], conv["bias"], conv["pads"]), atol=1e-4)


@pytest.mark.parametrize("case", ["stride", "group", "wide", "small window"])
def test_convs_outside_the_rewrites_are_left_alone(case):
    rng = np.random.default_rng(3)
    conv = {"stride": spec(rng, 3, 4, 7, (3, 3, 3, 3), strides=[2, 2]),
            "group": spec(rng, 4, 1, 7, (3, 3, 3, 3), group=4),
            "wide": spec(rng, 16, 4, 7, (3, 3, 3, 3)),
            "small window": spec(rng, 3, 4, 3, (1, 1, 1, 1))}[case]
    model = rewrite_for_cpu(conv_model([conv]))
    assert ops(model) == ["Conv"]
    if case == "stride":
        x = rng.normal(size=(1, 4, 9, 9)).astype(np.float32)
        np.testing.assert_allclose(run(model, x)[0], naive_conv(x, conv["weight"], conv["bias"], conv["pads"], 2), atol=1e-4)
