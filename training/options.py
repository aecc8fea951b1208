"""The data and training commands' options: defaults and help in one dataclass per command (the command
line is built from them by core.options). ``--output`` names where every command writes; the older
``--out`` is kept as an alias for one release."""
from __future__ import annotations

from dataclasses import dataclass

from core.faces import DEFAULT_MARGIN
from core.options import ModelOptions, at_least, option, positive

IDENTITY_MODEL = "data/sources/human-models"  # where `fetch-data` puts the face identity network (its default)

OUT = ("--out",)


@dataclass(frozen=True)
class MakeDataOptions:
    output: str | None = option(None, "dataset folder; videos go to OUTPUT/train and OUTPUT/test", required=True,
                                aliases=OUT)
    videos: int = option(48, "training videos", type=at_least(1))
    test_videos: int = option(8, "held-out test videos (the first is the astronaut)", type=at_least(1))
    frames: int = option(64, "frames per video", type=at_least(2))
    size: int = option(128, "frame width and height in pixels", type=at_least(32))
    seed: int = option(0, "random seed; the same seed gives the same videos", type=int)
    assets: str | None = option(None, "also write the bundled avatar.png to this folder")


@dataclass(frozen=True)
class FetchDataOptions:
    output: str = option("data/sources", "folder for the packages' media", aliases=OUT)


@dataclass(frozen=True)
class PrepareDataOptions:
    inputs: tuple[str, ...] = option((), "video files or folders of videos", positional=True, repeat=True,
                                     required=True)
    output: str | None = option(None, "dataset folder; clips go to OUTPUT/train and OUTPUT/test", required=True,
                                aliases=OUT)
    size: int = option(128, "clip width and height in pixels", type=at_least(16))
    test_video: tuple[str, ...] = option((), "hold this whole video out as test (name or stem); repeat for several",
                                         repeat=True)
    test_fraction: float = option(0.15, "chunks starting in this last share of each video are test",
                                  type=at_least(0.0, float))
    min_frames: int = option(32, "shorter chunks are dropped", type=at_least(2))
    max_frames: int = option(128, "longer chunks are cut", type=at_least(2))
    drift: float = option(0.25, "a chunk is cut when the union of its face boxes grows this much beyond their "
                          "mean size", type=at_least(0.0, float))
    margin: float = option(DEFAULT_MARGIN, "crop margin around the face box, per side, as in live",
                           type=at_least(0.0, float))
    overwrite: bool = option(False, "replace OUTPUT/train and OUTPUT/test if they exist")


@dataclass(frozen=True)
class MakeFaceDataOptions:
    photos: tuple[str, ...] = option((), "photos (default: the fetch-data photos of --split)", positional=True,
                                     repeat=True)
    sources: str = option("data/sources", "fetch-data folder")
    trajectories: str | None = option(None, "a prepare-data folder whose --split clips give the motion",
                                      required=True)
    output: str | None = option(None, "dataset folder; clips go to OUTPUT/SPLIT (with --own-size: OUTPUT)",
                                required=True, aliases=OUT)
    split: str = option("train", "photos and trajectory clips: the training ones, or the held-out test ones",
                        choices=("train", "test"))
    own_size: bool = option(False, "move each whole photo at its own resolution, not a --size face crop: "
                            "full-resolution clips whose truth is known, for eval-live")
    size: int = option(128, "clip width and height (--own-size keeps each photo's)", type=at_least(16))
    frames: int = option(64, "frames per clip", type=at_least(2))
    per_face: int = option(2, "clips per face, each with another trajectory (one whose warp does not fold the face)",
                          type=at_least(1))
    seed: int = option(0, "which trajectories each face gets", type=int)


@dataclass(frozen=True)
class PersonalizeOptions(ModelOptions):
    video: str | None = option(None, "a minute or so of you talking to the camera (any video file)",
                               positional=True)
    minutes: float = option(10.0, "fine-tuning time budget", type=positive)
    output: str | None = option(None, "folder for the personal model fomm.yaml + fomm.pth.tar and its data "
                                "(default: runs/personal/<video name>)", aliases=OUT)
    overwrite: bool = option(False, "replace --output if it exists")


@dataclass(frozen=True)
class TrainOptions:
    config: str | None = option(None, "YAML config with train_params (official format)", required=True)
    data: str | None = option(None, "dataset folder with train/ and test/ (videos or frame folders)", required=True)
    output: str = option("runs/train", "folder for checkpoint.pth.tar and sample sheets", aliases=OUT)
    resume: str | None = option(None, "checkpoint to continue from (optimizer, schedule and RNG included)")
    init: str | None = option(None, "start a new run from another checkpoint's tensors where names and shapes fit "
                              "(heads with more parts or keypoints keep the trained channels)")
    epochs: int | None = option(None, "train until this many epochs are done (default: the config's)",
                                type=at_least(1))
    vgg: str | None = option(None, "torchvision VGG-19 weights for the perceptual loss (never downloaded)")
    teacher: str | None = option(None, "checkpoint of a heavier FOMM model whose cross-identity frames this one learns "
                                 "(loss_weights.teacher; with --teacher-config)")
    teacher_config: str | None = option(None, "the --teacher checkpoint's config")
    identity_model: str = option(IDENTITY_MODEL, "fetch-data's human-models folder: the face network of "
                                 "loss_weights.identity (MobileFace)")
    sheet_every: int = option(200, "write a sample sheet every N steps (0: never)", type=at_least(0))
    max_steps: int | None = option(None, "stop after this many steps (for quick runs)", type=at_least(1))
    minutes: float | None = option(None, "train for this long instead of --epochs; the learning-rate milestones "
                                   "keep the config's fractions of the run", type=positive)
    workers: int = option(0, "processes loading batches (a GPU wants 4 or more)", type=at_least(0))
    snapshots: bool = option(False, "also keep every epoch's checkpoint as checkpoint_<epoch>.pth.tar (for "
                             "`average`)")
    seed: int = option(0, "random seed of the run", type=int)
    overwrite: bool = option(False, "start afresh in an --output that holds a run")
    cpu: bool = option(False, "train on the CPU even when a GPU is present")


@dataclass(frozen=True)
class AverageOptions:
    checkpoints: tuple[str, ...] = option((), "checkpoints of one run, e.g. its --snapshots", positional=True,
                                          repeat=True)
    config: str | None = option(None, "the config they were trained with", required=True)
    data: str | None = option(None, "training data; BatchNorm statistics are re-measured on it", required=True)
    output: str | None = option(None, "the averaged checkpoint (official layout, no optimizer)", required=True,
                                aliases=OUT)
    batches: int = option(60, "training batches for the BatchNorm statistics", type=at_least(1))
    cpu: bool = option(False, "run on the CPU even when a GPU is present")


@dataclass(frozen=True)
class SplitPartsOptions:
    checkpoint: str | None = option(None, "co-part checkpoint whose config has more parts than it uses",
                                    positional=True)
    config: str | None = option(None, "the config it was trained with", required=True)
    data: str | None = option(None, "training data; the parts' shares are measured on it", required=True)
    output: str | None = option(None, "the split checkpoint (official layout, no optimizer)", required=True,
                                aliases=OUT)
    min_share: float = option(0.005, "a part with less of the image is empty", type=at_least(0.0, float))
    noise: float = option(0.05, "relative noise on the copied heads", type=at_least(0.0, float))
    batches: int = option(20, "training batches to measure the shares on", type=at_least(1))
    cpu: bool = option(False, "run on the CPU even when a GPU is present")


@dataclass(frozen=True)
class EvalOptions:
    config: str | None = option(None, "YAML config of the model", required=True)
    checkpoint: str | None = option(None, "its checkpoint", required=True)
    data: str | None = option(None, "dataset folder; its test/ videos are evaluated", required=True)
    json: str | None = option(None, "also write the figures to this JSON file")
    landmarks: bool = option(False, "also AKD and MKR from dlib's 68 facial landmarks (pip install dlib-bin; "
                             "apt-get install libdlib-data)")
    photos: str | None = option(None, "fetch-data folder: also drive its photos of people not in training with "
                                "the test clips (cross-identity motion correlation and MKR; implies --landmarks)")
    expression: bool = option(True, "FOMM results with the expression stage (core/expression.py), as animate and live "
                              "show them; --no-expression: the network alone (needs --landmarks or --photos)")
    detail: bool = option(True, "FOMM results with the source photo's own detail and the model's error at rest at "
                          "the model's size, as animate and live show them (core/detail.py); --no-detail: the "
                          "model's frames as drawn")
    identity_model: str = option(IDENTITY_MODEL, "fetch-data's human-models folder: with landmarks also "
                                 "how much the results look like their source person (MobileFaceNet; left out when "
                                 "missing)")
    cpu: bool = option(False, "run on the CPU even when a GPU is present")
