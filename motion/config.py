"""The official YAML configs (first-order-model vox-256.yaml, motion-cosegmentation
vox-256-sem-10segments.yaml and friends) read as they are into typed, frozen objects.

Key names and defaults are the official ones. An unknown or missing model key is an error that names
the key, because a silently ignored key means a network that cannot load its checkpoint.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from motion.errors import UserError


class ConfigError(UserError):
    """A config file that cannot describe a model; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class KeypointDetectorParams:
    block_expansion: int
    max_features: int
    num_blocks: int
    temperature: float
    scale_factor: float = 1
    single_jacobian_map: bool = False
    pad: int = 0


@dataclass(frozen=True)
class DenseMotionParams:
    block_expansion: int
    max_features: int
    num_blocks: int
    scale_factor: float = 1
    kp_variance: float = 0.01


@dataclass(frozen=True)
class GeneratorParams:
    block_expansion: int
    max_features: int
    num_down_blocks: int
    num_bottleneck_blocks: int
    dense_motion_params: DenseMotionParams
    estimate_occlusion_map: bool = False


@dataclass(frozen=True)
class DiscriminatorParams:
    scales: tuple[float, ...] = (1,)
    block_expansion: int = 32
    max_features: int = 512
    num_blocks: int = 4
    sn: bool = False
    use_kp: bool = False
    kp_variance: float = 0.01


@dataclass(frozen=True)
class FommParams:
    num_kp: int
    num_channels: int
    kp_detector: KeypointDetectorParams
    generator: GeneratorParams
    discriminator: DiscriminatorParams
    estimate_jacobian: bool = False


@dataclass(frozen=True)
class SegmentationParams:
    block_expansion: int
    max_features: int
    num_blocks: int
    temperature: float
    scale_factor: float = 1


@dataclass(frozen=True)
class ReconstructionParams:
    block_expansion: int
    max_features: int
    num_down_blocks: int
    num_bottleneck_blocks: int
    estimate_visibility: bool = False


@dataclass(frozen=True)
class CosegParams:
    num_segments: int
    num_channels: int
    segmentation: SegmentationParams
    reconstruction: ReconstructionParams
    estimate_affine_part: bool = False


@dataclass(frozen=True)
class TransformParams:
    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    points_tps: int = 5


@dataclass(frozen=True)
class LossWeights:
    perceptual: tuple[float, ...] = (10, 10, 10, 10, 10)
    equivariance_value: float = 0
    equivariance_jacobian: float = 0
    equivariance: float = 0  # co-part segmentation: one weight for shift and affine
    generator_gan: float = 0
    discriminator_gan: float = 0
    feature_matching: tuple[float, ...] = ()


@dataclass(frozen=True)
class TrainParams:
    num_epochs: int
    batch_size: int
    scales: tuple[float, ...] = (1, 0.5, 0.25, 0.125)
    num_repeats: int = 1
    epoch_milestones: tuple[int, ...] = ()
    checkpoint_freq: int = 50
    transform_params: TransformParams = TransformParams()
    loss_weights: LossWeights = LossWeights()
    learning_rates: dict[str, float] = field(default_factory=dict)  # lr_<module> keys, e.g. {"generator": 2e-4}


ModelParams = Union[FommParams, CosegParams]


@dataclass(frozen=True)
class PartSwapParams:
    """Parts `swap` moves by default: which channels hold the face differs from model to model, so our
    configs name them; without the section, the official part_swap.py default."""
    swap_index: tuple[int, ...] = (1, 2, 5)


@dataclass(frozen=True)
class Config:
    path: str
    model: ModelParams
    frame_shape: tuple[int, int, int]
    train: TrainParams | None
    dataset: dict[str, Any]
    animate: dict[str, Any]
    swap_index: tuple[int, ...]

    @property
    def kind(self) -> str:
        """'fomm' or 'coseg'."""
        return "fomm" if isinstance(self.model, FommParams) else "coseg"

    @property
    def size(self) -> tuple[int, int]:
        return self.frame_shape[0], self.frame_shape[1]


def _fields(cls, values: Any, where: str, path: str, nested: dict[str, Any] | None = None):
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and reporting missing ones."""
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: '{where}' must be a mapping of keys, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{path}: unknown key '{where}.{unknown[0]}' (known: {', '.join(sorted(names))}); "
                          "fix the spelling or use a config written for this model")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    values = {**values, **(nested or {})}
    missing = [name for name in required if name not in values]
    if missing:
        raise ConfigError(f"{path}: missing key '{where}.{missing[0]}'; add it (see the official configs)")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _section(values: dict, key: str, where: str, path: str) -> dict:
    if key not in values:
        raise ConfigError(f"{path}: missing section '{where}.{key}'; add it (see the official configs)")
    return values[key]


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


def _train(values: dict, path: str) -> TrainParams:
    values = dict(values)
    rates = {k[len("lr_"):]: float(values.pop(k)) for k in list(values) if k.startswith("lr_")}
    nested = {"learning_rates": rates}
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
    model = values["model_params"]
    if "kp_detector_params" in model:
        params: ModelParams = _fomm(model, path)
    elif "segmentation_module_params" in model:
        params = _coseg(model, path)
    else:
        raise ConfigError(f"{path}: model_params has neither kp_detector_params (First Order Motion Model) nor "
                          "segmentation_module_params (co-part segmentation)")
    dataset = dict(values.get("dataset_params") or {})
    shape = dataset.get("frame_shape", dataset.get("image_shape", [256, 256, 3]))
    if len(shape) != 3 or shape[2] != params.num_channels:
        raise ConfigError(f"{path}: dataset_params frame shape {shape} must be [height, width, "
                          f"{params.num_channels}] to match model_params.common_params.num_channels")
    train = _train(values["train_params"], path) if "train_params" in values else None
    swap = _fields(PartSwapParams, values.get("part_swap_params") or {}, "part_swap_params", path)
    return Config(path=path, model=params, frame_shape=tuple(int(s) for s in shape), train=train,
                  dataset=dataset, animate=dict(values.get("animate_params") or {}),
                  swap_index=tuple(int(i) for i in swap.swap_index))


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
