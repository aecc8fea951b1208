"""Config values of the wrong type or out of range are one-line ConfigErrors naming the file and the key,
never a traceback from the loader or from building the networks; every shipped config still loads as is."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import CONFIGS, ROOT, TEST_CONFIGS
from motion.config import ConfigError, load_config
from motion.errors import UserError
from motion.networks import build_networks

SHIPPED = sorted([*CONFIGS.glob("*.yaml"), *(ROOT / "checkpoints").glob("*.yaml"), *TEST_CONFIGS.glob("*.yaml")])
VALID = {name: yaml.safe_load(path.read_text()) for name, path in {
    "vox": CONFIGS / "vox-256.yaml", "sem": CONFIGS / "vox-256-sem-10segments.yaml",
    "tiny-fomm": TEST_CONFIGS / "tiny-fomm.yaml", "tiny-coseg": TEST_CONFIGS / "tiny-coseg.yaml"}.items()}
# YAML model sections -> the attribute of the config's model that holds them (common_params: the model itself)
SECTIONS = {"common_params": None, "kp_detector_params": "kp_detector", "generator_params": "generator",
            "discriminator_params": "discriminator", "segmentation_module_params": "segmentation",
            "reconstruction_module_params": "reconstruction"}


def _assert_same(obj: Any, values: dict, where: str) -> None:
    """Every YAML value reappears on ``obj`` unchanged and of the same type (YAML 1 stays int 1: the
    discriminator names its modules by str(scale)); lists become tuples, sub-mappings sub-objects."""
    for key, value in values.items():
        got = getattr(obj, key)
        if isinstance(value, dict):
            _assert_same(got, value, f"{where}.{key}")
        else:
            want = tuple(value) if isinstance(value, list) else value
            assert got == want and type(got) is type(want), f"{where}.{key}: {got!r} != {want!r}"
            if isinstance(value, list):
                assert [type(x) for x in got] == [type(x) for x in value], f"{where}.{key}"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_configs_load_unchanged(path: Path):
    values = yaml.safe_load(path.read_text())
    config = load_config(path)
    for section, attribute in SECTIONS.items():
        if section in values["model_params"]:
            _assert_same(getattr(config.model, attribute) if attribute else config.model,
                         values["model_params"][section], f"model_params.{section}")
    train = dict(values.get("train_params") or {})
    assert config.train.learning_rates == {k[3:]: train.pop(k) for k in list(train) if k.startswith("lr_")}
    _assert_same(config.train, train, "train_params")
    assert config.dataset == values.get("dataset_params", {})
    assert config.frame_shape == tuple(values["dataset_params"].get("frame_shape")
                                       or values["dataset_params"]["image_shape"])
    assert config.swap_index == tuple((values.get("part_swap_params") or {}).get("swap_index", (1, 2, 5)))


def test_official_values_spot_check():
    vox = load_config(CONFIGS / "vox-256.yaml")
    assert vox.model.num_kp == 10 and vox.model.kp_detector.temperature == 0.1 and vox.frame_shape == (256, 256, 3)
    assert vox.model.discriminator.scales == (1,) and type(vox.model.discriminator.scales[0]) is int
    assert vox.train.scales == (1, 0.5, 0.25, 0.125) and vox.train.epoch_milestones == (60, 90)
    assert vox.train.learning_rates["generator"] == 2e-4 and vox.train.transform_params.points_tps == 5
    sem = load_config(CONFIGS / "vox-256-sem-10segments.yaml")
    assert sem.model.num_segments == 10 and sem.model.reconstruction.num_bottleneck_blocks == 6
    assert sem.train.loss_weights.equivariance == 10 and sem.frame_shape == (256, 256, 3)


def _write(values: Any, directory: Path, name: str = "mutated.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(values))
    return path


def _set(values: dict, key: str, value: Any) -> dict:
    """A copy of ``values`` with the dotted ``key`` set to ``value``."""
    values = copy.deepcopy(values)
    *parents, last = key.split(".")
    node = values
    for parent in parents:
        node = node[parent]
    node[last] = value
    return values


MC, KP, GEN, TRAIN = "model_params.common_params", "model_params.kp_detector_params", \
    "model_params.generator_params", "train_params"
BAD = [  # (config, key, value, words the message must contain besides the key)
    ("vox", f"{MC}.num_kp", "ten", "a whole number >= 1"),
    ("vox", f"{MC}.num_kp", 10.5, "a whole number >= 1"),
    ("vox", f"{MC}.num_kp", -3, "a whole number >= 1"),
    ("vox", f"{MC}.num_kp", True, "is true; expected a whole number"),
    ("vox", "dataset_params.frame_shape", 128, "a list of 3 items, each item a whole number >= 1"),
    ("vox", "dataset_params.frame_shape", [256, 256], "a list of 3 items"),
    ("vox", "dataset_params.frame_shape", [256, 256.0, 3], "a list of 3 items"),
    ("vox", f"{KP}.temperature", "hot", "the text 'hot'; expected a finite number > 0"),
    ("vox", f"{KP}.temperature", 0, "> 0"),
    ("vox", f"{TRAIN}.batch_size", "two", "a whole number >= 1"),
    ("vox", f"{TRAIN}.batch_size", 0, "a whole number >= 1"),
    ("vox", f"{TRAIN}.lr_generator", "2.0e-3x", "expected a finite number > 0"),
    ("vox", f"{TRAIN}.lr_generator", "5e-4", "write 5.0e-4"),
    ("vox", f"{TRAIN}.lr_kp_detector", float("inf"), "finite"),
    ("vox", f"{TRAIN}.scales", 1, "a list (non-empty)"),
    ("vox", f"{TRAIN}.scales", [1, 2], "(0, 1]"),
    ("vox", f"{TRAIN}.epoch_milestones", [60, 1.5], "a whole number >= 0"),
    ("vox", f"{TRAIN}.checkpoint_freq", 0, "a whole number >= 1"),
    ("vox", f"{TRAIN}.transform_params.points_tps", 1, "a whole number >= 2"),
    ("vox", f"{TRAIN}.loss_weights.perceptual", [], "a list (non-empty)"),
    ("vox", f"{TRAIN}.loss_weights.perceptual", [10, "x"], "a finite number >= 0"),
    ("vox", f"{TRAIN}.loss_weights.equivariance_value", -1, ">= 0"),
    ("vox", f"{MC}.estimate_jacobian", "maybe", "true or false"),
    ("vox", f"{KP}.scale_factor", 0, "(0, 1]"),
    ("vox", f"{KP}.scale_factor", 1.5, "(0, 1]"),
    ("vox", f"{KP}.scale_factor", float("nan"), "(0, 1]"),
    ("vox", f"{KP}.max_features", 16, "at least model_params.kp_detector_params.block_expansion (32)"),
    ("vox", f"{GEN}.num_down_blocks", -1, "a whole number >= 0"),
    ("vox", f"{GEN}.dense_motion_params.scale_factor", 1e-300, "at least 1/256"),
    ("vox", "model_params.discriminator_params.sn", None, "empty (null); expected true or false"),
    ("vox", "model_params.generator_params", [1, 2], "expected a mapping"),
    ("vox", "dataset_params.augmentation_params.jitter_param.hue", 0.7, "[0, 0.5]"),
    ("vox", "dataset_params.augmentation_params.flip_param.time_flip", "yes", "true or false"),
    ("sem", f"{MC}.num_segments", 0, "a whole number >= 1"),
    ("sem", "dataset_params.image_shape", "256x256", "a list of 3 items"),
    ("sem", "model_params.reconstruction_module_params.estimate_visibility", 1, "true or false"),
    ("tiny-coseg", "part_swap_params", {"swap_index": []}, "a list (non-empty)"),
    ("tiny-coseg", "part_swap_params", {"swap_index": [1, -2]}, "a whole number >= 0"),
    ("tiny-coseg", TRAIN, None, "expected a mapping"),
]


@pytest.mark.parametrize("name, key, value, words", BAD, ids=[f"{k.split('.')[-1]}={v!r}" for _, k, v, _ in BAD])
def test_bad_value_names_the_key(tmp_path: Path, name: str, key: str, value: Any, words: str):
    path = _write(_set(VALID[name], key, value), tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and key in message, message
    assert words in message, message


# Wrong values of every kind; small whole numbers and fractions also reach the "accepted, now build it" branch.
JUNK = st.one_of(
    st.text(max_size=8), st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1), st.integers(-10 ** 12, -1),
    st.integers(0, 4), st.booleans(),
    st.none(), st.lists(st.one_of(st.integers(-3, 3), st.floats(), st.text(max_size=3), st.none()), max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), st.integers(), max_size=3))


def _nodes(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Paths (keys and list indices) of every mapping entry and list item below ``value``."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [path for key, child in children for path in [prefix + (key,), *_nodes(child, prefix + (key,))]]


def _load_or_refuse(values: Any, directory: Path) -> None:
    """Load ``values`` from YAML: a refusal must be a one-line UserError; an accepted config must build."""
    path = _write(values, directory)
    try:
        config = load_config(path)
    except UserError as err:
        assert "\n" not in str(err) and str(path) in str(err), str(err)
        event("refused")
        return
    event("accepted and built")
    # use_kp: true loads (inference never builds the discriminator); MultiScaleDiscriminator refuses it itself
    with_discriminator = config.kind == "fomm" and not config.model.discriminator.use_kp
    build_networks(config, with_discriminator=with_discriminator)


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data(), name=st.sampled_from(sorted(VALID)))
def test_random_wrong_value_is_a_user_error(tmp_path: Path, data: st.DataObject, name: str):
    values = copy.deepcopy(VALID[name])
    *parents, last = data.draw(st.sampled_from(_nodes(values)), label="key")
    node = values
    for parent in parents:
        node = node[parent]
    node[last] = data.draw(JUNK, label="value")
    _load_or_refuse(values, tmp_path)


@settings(FUZZ, max_examples=50)
@given(data=st.data(), name=st.sampled_from(sorted(VALID)))
def test_random_dropped_key_is_a_user_error(tmp_path: Path, data: st.DataObject, name: str):
    values = copy.deepcopy(VALID[name])
    *parents, last = data.draw(st.sampled_from([p for p in _nodes(values) if not isinstance(p[-1], int)]),
                               label="key")
    node = values
    for parent in parents:
        node = node[parent]
    del node[last]
    _load_or_refuse(values, tmp_path)
