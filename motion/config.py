"""The official YAML configs (first-order-model vox-256.yaml, motion-cosegmentation
vox-256-sem-10segments.yaml and friends) read as they are into typed, frozen objects.

Key names and defaults are the official ones. An unknown or missing model key is an error that names
the key, because a silently ignored key means a network that cannot load its checkpoint. Every value
is checked against the Rule declared with its field (type and range), so `num_kp: ten` or
`scale_factor: 2` is a one-line error naming the file and key, not a traceback deep in a network.
The official demo's and logger's sections (animate_params, reconstruction_params, visualizer_params) are
accepted and not read: the commands' options (relative motion, adapt-scale, outputs) hold those choices.
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from motion.errors import UserError


class ConfigError(UserError):
    """A config file that cannot describe a model; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class Rule:
    """What one YAML value must be: a test, and the words an error uses to say what was expected."""
    expected: str
    accepts: Callable[[Any], bool]


def _is_int(value: Any) -> bool:
    """YAML 10 is an int; 10.5, '10' and true are not (bool is an int subclass in Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """Ints and finite floats. Not text: PyYAML reads 5e-4 (no dot) as a string, and no shipped config has one."""
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def whole(low: int) -> Rule:
    """A real int (not 10.5, not true) of at least ``low``."""
    return Rule(f"a whole number >= {low}", lambda v: _is_int(v) and v >= low)


def number(low: float, high: float | None = None, *, strict: bool = False, words: str | None = None) -> Rule:
    """A number >= low (> low if strict) and, when high is given, <= high."""
    words = words or (f"a finite number {'>' if strict else '>='} {low}" if high is None
                      else f"a number in {'(' if strict else '['}{low}, {high}]")
    return Rule(words, lambda v: _is_number(v) and (v > low if strict else v >= low) and (high is None or v <= high))


def listing(item: Rule, *, min_len: int = 0, length: int | None = None) -> Rule:
    """A YAML list whose every item passes ``item``; exactly ``length`` items, or at least ``min_len``."""
    size = f"of {length} items" if length is not None else "(non-empty)" if min_len else "(maybe empty)"
    return Rule(f"a list {size}, each item {item.expected}",
                lambda v: isinstance(v, list) and (len(v) == length if length is not None else len(v) >= min_len)
                and all(item.accepts(x) for x in v))


BOOL = Rule("true or false", lambda v: isinstance(v, bool))
COUNT = whole(1)  # how many kernels, blocks, keypoints, epochs...: zero builds nothing usable
NATURAL = whole(0)  # zero means something: no down/bottleneck blocks, no padding, epoch 0, part 0 (background)
POSITIVE = number(0, strict=True)  # temperatures, variances, learning rates: they divide or scale steps
NON_NEGATIVE = number(0)  # loss weights, noise sigmas, jitter spreads: zero switches the term off
# A resize factor. The anti-alias kernel is ~8/scale pixels wide, so tiny factors cannot even be built;
# 1/256 already shrinks the official 256-pixel frame to one pixel.
SCALE = number(1 / 256, 1, words="a number in (0, 1], at least 1/256")
SCALES = listing(SCALE, min_len=1)
FRAME_SHAPE = listing(COUNT, length=3)  # [height, width, channels]


def checked(rule: Rule, default: Any = dataclasses.MISSING, at_least: str | None = None) -> Any:
    """A dataclass field filled from the YAML key of the same name; ``rule`` says what the key accepts, and
    ``at_least`` names a sibling field it must not be smaller than."""
    return field(default=default, metadata={"rule": rule, "at_least": at_least})


@dataclass(frozen=True)
class KeypointDetectorParams:
    block_expansion: int = checked(COUNT)
    # _width() caps every layer at max_features, so a cap below the first layer breaks the channel count
    max_features: int = checked(COUNT, at_least="block_expansion")
    num_blocks: int = checked(COUNT)
    temperature: float = checked(POSITIVE)
    scale_factor: float = checked(SCALE, 1)
    single_jacobian_map: bool = checked(BOOL, False)
    pad: int = checked(NATURAL, 0)


@dataclass(frozen=True)
class DenseMotionParams:
    block_expansion: int = checked(COUNT)
    max_features: int = checked(COUNT, at_least="block_expansion")
    num_blocks: int = checked(COUNT)
    scale_factor: float = checked(SCALE, 1)
    kp_variance: float = checked(POSITIVE, 0.01)


@dataclass(frozen=True)
class GeneratorParams:
    block_expansion: int = checked(COUNT)
    max_features: int = checked(COUNT, at_least="block_expansion")
    num_down_blocks: int = checked(NATURAL)
    num_bottleneck_blocks: int = checked(NATURAL)
    dense_motion_params: DenseMotionParams
    estimate_occlusion_map: bool = checked(BOOL, False)


@dataclass(frozen=True)
class DiscriminatorParams:
    scales: tuple[float, ...] = checked(SCALES, (1,))
    block_expansion: int = checked(COUNT, 32)
    max_features: int = checked(COUNT, 512, at_least="block_expansion")
    num_blocks: int = checked(COUNT, 4)
    sn: bool = checked(BOOL, False)
    use_kp: bool = checked(BOOL, False)
    kp_variance: float = checked(POSITIVE, 0.01)


@dataclass(frozen=True)
class FommParams:
    num_kp: int = checked(COUNT)
    num_channels: int = checked(COUNT)
    kp_detector: KeypointDetectorParams
    generator: GeneratorParams
    discriminator: DiscriminatorParams
    estimate_jacobian: bool = checked(BOOL, False)


@dataclass(frozen=True)
class SegmentationParams:
    block_expansion: int = checked(COUNT)
    max_features: int = checked(COUNT, at_least="block_expansion")
    num_blocks: int = checked(COUNT)
    temperature: float = checked(POSITIVE)
    scale_factor: float = checked(SCALE, 1)


@dataclass(frozen=True)
class ReconstructionParams:
    block_expansion: int = checked(COUNT)
    max_features: int = checked(COUNT, at_least="block_expansion")
    num_down_blocks: int = checked(NATURAL)
    num_bottleneck_blocks: int = checked(NATURAL)
    estimate_visibility: bool = checked(BOOL, False)


@dataclass(frozen=True)
class CosegParams:
    num_segments: int = checked(COUNT)
    num_channels: int = checked(COUNT)
    segmentation: SegmentationParams
    reconstruction: ReconstructionParams
    estimate_affine_part: bool = checked(BOOL, False)


@dataclass(frozen=True)
class TransformParams:
    sigma_affine: float = checked(NON_NEGATIVE, 0.05)
    sigma_tps: float = checked(NON_NEGATIVE, 0.005)
    points_tps: int = checked(whole(2), 5)  # a points_tps x points_tps grid spanning [-1, 1] needs 2 a side


@dataclass(frozen=True)
class LossWeights:
    # one weight per VGG slice; the first also weighs the pixel fallback without VGG, so at least one
    perceptual: tuple[float, ...] = checked(listing(NON_NEGATIVE, min_len=1), (10, 10, 10, 10, 10))
    equivariance_value: float = checked(NON_NEGATIVE, 0)
    equivariance_jacobian: float = checked(NON_NEGATIVE, 0)
    equivariance: float = checked(NON_NEGATIVE, 0)  # co-part segmentation: one weight for shift and affine
    generator_gan: float = checked(NON_NEGATIVE, 0)
    discriminator_gan: float = checked(NON_NEGATIVE, 0)
    feature_matching: tuple[float, ...] = checked(listing(NON_NEGATIVE), ())
    # ours, co-part only: BCE of the foreground (not part 0) against a chroma key on blue-screen frames
    matte: float = checked(NON_NEGATIVE, 0)
    # ours: L1 between driving frame and prediction inside the driving frame's mouth and eye landmark masks
    expression: float = checked(NON_NEGATIVE, 0)
    # ours, FOMM only: L1 between train_params.anchor_keypoints and the lip and eyelid landmarks they are tied
    # to (training/anchors.py), in source and driving frames
    anchor: float = checked(NON_NEGATIVE, 0)
    # ours, FOMM only: the reconstruction loss between the model's and a teacher model's (train --teacher)
    # cross-identity frames (training/distill.py)
    teacher: float = checked(NON_NEGATIVE, 0)
    # ours, FOMM only: 1 - cosine of a face network's embeddings of the model's cross-identity frames and their
    # avatars (training/identity_loss.py); needs the anchor landmarks (scripts/face_masks.py)
    identity: float = checked(NON_NEGATIVE, 0)


LEARNING_RATE = POSITIVE  # the rule of every train_params.lr_<module> key


@dataclass(frozen=True)
class TrainParams:
    num_epochs: int = checked(COUNT)
    batch_size: int = checked(COUNT)
    scales: tuple[float, ...] = checked(SCALES, (1, 0.5, 0.25, 0.125))
    num_repeats: int = checked(COUNT, 1)
    epoch_milestones: tuple[int, ...] = checked(listing(NATURAL), ())
    checkpoint_freq: int = checked(COUNT, 50)  # epoch % checkpoint_freq
    transform_params: TransformParams = TransformParams()
    loss_weights: LossWeights = LossWeights()
    learning_rates: dict[str, float] = field(default_factory=dict)  # lr_<module> keys, e.g. {"generator": 2e-4}
    # ours: the keypoints tied to the upper lip, lower lip, image-left and image-right upper eyelid
    # (loss_weights.anchor; training/anchors.py ANCHORS)
    anchor_keypoints: tuple[int, ...] = checked(listing(NATURAL), ())


ModelParams = Union[FommParams, CosegParams]


@dataclass(frozen=True)
class PartSwapParams:
    """Parts `swap` moves by default: which channels hold the face differs from model to model, so our
    configs name them; without the section, the official part_swap.py default."""
    swap_index: tuple[int, ...] = checked(listing(NATURAL, min_len=1), (1, 2, 5))  # 0 is the background


@dataclass(frozen=True)
class Config:
    path: str
    model: ModelParams
    frame_shape: tuple[int, int, int]
    train: TrainParams | None
    dataset: dict[str, Any]
    swap_index: tuple[int, ...]

    @property
    def kind(self) -> str:
        """'fomm' or 'coseg'."""
        return "fomm" if isinstance(self.model, FommParams) else "coseg"

    @property
    def size(self) -> tuple[int, int]:
        return self.frame_shape[0], self.frame_shape[1]


# dataset_params stays a plain mapping (the official configs of other datasets carry more keys); these are
# the keys this code reads, checked where present.
DATASET_RULES: dict[str, Any] = {
    "frame_shape": FRAME_SHAPE, "image_shape": FRAME_SHAPE,
    "augmentation_params": {
        "flip_param": {"horizontal_flip": BOOL, "time_flip": BOOL},
        # factors are drawn from [1 - p, 1 + p]; the hue shift from [-p, p] of a full turn
        "jitter_param": {"brightness": NON_NEGATIVE, "contrast": NON_NEGATIVE, "saturation": NON_NEGATIVE,
                         "hue": number(0, 0.5)},
    },
}


def _shown(value: Any) -> str:
    """The given value on one line; text is marked as text, because '10' and 10 print alike."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return str(value).lower()
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    if not isinstance(value, str):
        return shown
    if re.fullmatch(r"[-+]?\d+[eE][-+]?\d+", value):
        mantissa, exponent = re.split("[eE]", value)
        return f"the text {shown} (YAML reads a number without a dot as text; write {mantissa}.0e{exponent})"
    return f"the text {shown}"


def _check(rule: Rule, value: Any, key: str, path: str) -> None:
    if not rule.accepts(value):
        raise ConfigError(f"{path}: {key} is {_shown(value)}; expected {rule.expected}")


def _mapping(value: Any, where: str, path: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {where} is {_shown(value)}; expected a mapping of keys (indented key: value lines)")
    return value


_T = TypeVar("_T")


def _fields(cls: type[_T], values: Any, where: str, path: str, nested: dict[str, Any] | None = None) -> _T:
    """Build dataclass ``cls`` from a mapping: refuse unknown keys, report missing ones, check every value
    against its field's rule. ``nested`` holds the already built sub-sections, which are not keys here."""
    values = _mapping(values, where, path)
    fields = dataclasses.fields(cls)
    rules = {f.name: f.metadata["rule"] for f in fields if "rule" in f.metadata}
    unknown = sorted(set(values) - set(rules), key=str)
    if unknown:
        raise ConfigError(f"{path}: unknown key '{where}.{unknown[0]}' (known: {', '.join(sorted(rules))}); "
                          "fix the spelling or use a config written for this model")
    for name, value in values.items():
        _check(rules[name], value, f"{where}.{name}", path)
    values = {**values, **(nested or {})}
    missing = [f.name for f in fields if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{path}: missing key '{where}.{missing[0]}'; add it (see the official configs)")
    built = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    for f in fields:
        other = f.metadata.get("at_least")
        if other and getattr(built, f.name) < getattr(built, other):
            raise ConfigError(f"{path}: {where}.{f.name} is {getattr(built, f.name)}; expected at least "
                              f"{where}.{other} ({getattr(built, other)}), the width of the first layer")
    return built


def _section(values: dict, key: str, where: str, path: str) -> dict:
    if key not in values:
        raise ConfigError(f"{path}: missing section '{where}.{key}'; add it (see the official configs)")
    return _mapping(values[key], f"{where}.{key}", path)


def _optional_section(values: dict, key: str, path: str) -> dict:
    """A top-level section that may be absent or left empty (null)."""
    return {} if values.get(key) is None else _mapping(values[key], key, path)


def _check_tree(rules: dict[str, Any], values: dict, where: str, path: str) -> None:
    """Check the keys of a pass-through mapping that ``rules`` knows (a Rule, or a dict for a sub-mapping,
    which may be null as the readers treat it as empty); other keys pass unchecked."""
    for key, rule in rules.items():
        value, name = values.get(key), f"{where}.{key}"
        if isinstance(rule, Rule) and key in values:
            _check(rule, value, name, path)
        elif isinstance(rule, dict) and value is not None:
            _check_tree(rule, _mapping(value, name, path), name, path)


def _fomm(model: dict, path: str) -> FommParams:
    common = _section(model, "common_params", "model_params", path)
    gen = dict(_section(model, "generator_params", "model_params", path))
    dense = _fields(DenseMotionParams, _section(gen, "dense_motion_params", "model_params.generator_params", path),
                    "model_params.generator_params.dense_motion_params", path)
    gen.pop("dense_motion_params")
    return _fields(FommParams, common, "model_params.common_params", path, nested={
        "kp_detector": _fields(KeypointDetectorParams, _section(model, "kp_detector_params", "model_params", path),
                               "model_params.kp_detector_params", path),
        "generator": _fields(GeneratorParams, gen, "model_params.generator_params", path,
                             nested={"dense_motion_params": dense}),
        "discriminator": _fields(DiscriminatorParams, model.get("discriminator_params", {}),
                                 "model_params.discriminator_params", path),
    })


def _coseg(model: dict, path: str) -> CosegParams:
    common = _section(model, "common_params", "model_params", path)
    return _fields(CosegParams, common, "model_params.common_params", path, nested={
        "segmentation": _fields(SegmentationParams,
                                _section(model, "segmentation_module_params", "model_params", path),
                                "model_params.segmentation_module_params", path),
        "reconstruction": _fields(ReconstructionParams,
                                  _section(model, "reconstruction_module_params", "model_params", path),
                                  "model_params.reconstruction_module_params", path),
    })


def _train(values: Any, path: str) -> TrainParams:
    values = dict(_mapping(values, "train_params", path))
    lr_keys = [k for k in values if isinstance(k, str) and k.startswith("lr_")]
    for key in lr_keys:
        _check(LEARNING_RATE, values[key], f"train_params.{key}", path)
    nested: dict[str, Any] = {"learning_rates": {k[len("lr_"):]: float(values.pop(k)) for k in lr_keys}}
    if "transform_params" in values:
        nested["transform_params"] = _fields(TransformParams, values.pop("transform_params"),
                                             "train_params.transform_params", path)
    if "loss_weights" in values:
        nested["loss_weights"] = _fields(LossWeights, values.pop("loss_weights"), "train_params.loss_weights", path)
    return _fields(TrainParams, values, "train_params", path, nested=nested)


def parse_config(values: dict, path: str = "<config>") -> Config:
    """Typed config from the already-parsed YAML mapping."""
    if not isinstance(values, dict) or "model_params" not in values:
        raise ConfigError(f"{path}: no 'model_params' section; this is not a first-order-model or "
                          "motion-cosegmentation config (e.g. config/vox-256.yaml)")
    model = _mapping(values["model_params"], "model_params", path)
    if "kp_detector_params" in model:
        params: ModelParams = _fomm(model, path)
    elif "segmentation_module_params" in model:
        params = _coseg(model, path)
    else:
        raise ConfigError(f"{path}: model_params has neither kp_detector_params (First Order Motion Model) nor "
                          "segmentation_module_params (co-part segmentation)")
    dataset = dict(_optional_section(values, "dataset_params", path))
    _check_tree(DATASET_RULES, dataset, "dataset_params", path)
    shape = dataset.get("frame_shape", dataset.get("image_shape", [256, 256, 3]))
    if shape[2] != params.num_channels:
        raise ConfigError(f"{path}: dataset_params frame shape {shape} must be [height, width, "
                          f"{params.num_channels}] to match model_params.common_params.num_channels")
    train = _train(values["train_params"], path) if "train_params" in values else None
    swap = _fields(PartSwapParams, _optional_section(values, "part_swap_params", path), "part_swap_params", path)
    return Config(path=path, model=params, frame_shape=tuple(shape), train=train,
                  dataset=dataset, swap_index=swap.swap_index)


def load_config(path: str | Path) -> Config:
    """Read and parse a YAML config; every failure is a ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass --config with the path of a YAML config "
                          "(e.g. checkpoints/NAME.yaml)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    return parse_config(values, str(path))
