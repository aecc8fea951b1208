"""motion/config.py: the rule builders, the defaults and every user-facing message, written out in full by
hand (mutation testing, issue 12). A config error is the user's only guide to fixing a file, so its words
are pinned here rather than waved through as 'just a message'."""
from __future__ import annotations

import copy
import dataclasses

import pytest

from motion.config import (
    COUNT,
    ConfigError,
    DenseMotionParams,
    DiscriminatorParams,
    KeypointDetectorParams,
    TransformParams,
    checked,
    listing,
    load_config,
    number,
    parse_config,
    whole,
)

P = "cfg.yaml"  # the path parse_config names in its messages

FOMM = {"model_params": {
    "common_params": {"num_kp": 2, "num_channels": 3},
    "kp_detector_params": {"block_expansion": 4, "max_features": 8, "num_blocks": 1, "temperature": 0.1},
    "generator_params": {"block_expansion": 4, "max_features": 8, "num_down_blocks": 1, "num_bottleneck_blocks": 0,
                         "dense_motion_params": {"block_expansion": 4, "max_features": 8, "num_blocks": 1}}}}
COSEG = {"model_params": {
    "common_params": {"num_segments": 3, "num_channels": 3},
    "segmentation_module_params": {"block_expansion": 4, "max_features": 8, "num_blocks": 1, "temperature": 0.2},
    "reconstruction_module_params": {"block_expansion": 4, "max_features": 4, "num_down_blocks": 1,
                                     "num_bottleneck_blocks": 1}}}
TRAIN = {"num_epochs": 3, "batch_size": 2}


def edited(base: dict, **sections) -> dict:
    """A deep copy of ``base`` with top-level sections replaced or, given as (dotted key, value), set."""
    values = copy.deepcopy(base)
    for key, value in sections.items():
        values[key] = value
    return values


def put(base: dict, dotted: str, value) -> dict:
    values = copy.deepcopy(base)
    *parents, last = dotted.split(".")
    node = values
    for parent in parents:
        node = node[parent]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return values


DELETE = object()


def message(values, path: str = P) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(values, path)
    return str(caught.value)


# --- the rule builders (called at import time for the module's own rules, so called here directly) ---

def test_whole_rule():
    rule = whole(3)
    assert rule.expected == "a whole number >= 3"
    assert [rule.accepts(v) for v in (3, 4, 2, 3.0, True, "3", None)] == [True, True, False, False, False, False,
                                                                            False]


def test_number_rule_words():
    assert number(0).expected == "a finite number >= 0"
    assert number(0.5, strict=True).expected == "a finite number > 0.5"
    assert number(0, 2).expected == "a number in [0, 2]"
    assert number(0, 2, strict=True).expected == "a number in (0, 2]"
    assert number(0, 2, words="my words").expected == "my words"


def test_number_rule_bounds_and_types():
    closed = number(0.5, 2)
    assert [closed.accepts(v) for v in (0.5, 2, 1, 0.4999, 2.0001)] == [True, True, True, False, False]
    open_low = number(0.5, strict=True)
    assert [open_low.accepts(v) for v in (0.5, 0.50001, 1e300)] == [False, True, True]
    assert [number(0).accepts(v) for v in (float("nan"), float("inf"), True, "1", None, 0, 7)] == [
        False, False, False, False, False, True, True]


def test_listing_rule():
    exact = listing(COUNT, length=2)
    assert exact.expected == "a list of 2 items, each item a whole number >= 1"
    assert [exact.accepts(v) for v in ([1, 2], [1], [1, 2, 3], [1, 0], (1, 2), "12")] == [
        True, False, False, False, False, False]
    non_empty = listing(whole(0), min_len=1)
    assert non_empty.expected == "a list (non-empty), each item a whole number >= 0"
    assert [non_empty.accepts(v) for v in ([0], [], [0, 5, 9])] == [True, False, True]
    at_least_two = listing(whole(0), min_len=2)
    assert [at_least_two.accepts(v) for v in ([0], [0, 1], [0, 1, 2])] == [False, True, True]
    maybe_empty = listing(whole(0))
    assert maybe_empty.expected == "a list (maybe empty), each item a whole number >= 0"
    assert maybe_empty.accepts([]) and not maybe_empty.accepts([-1])


def test_checked_field_carries_the_rule_the_default_and_the_sibling():
    f = checked(COUNT, 5, at_least="block_expansion")
    assert f.default == 5 and f.metadata["rule"] is COUNT and f.metadata["at_least"] == "block_expansion"
    bare = checked(COUNT)
    assert bare.default is dataclasses.MISSING and bare.metadata["at_least"] is None


# --- defaults and what the loader builds ---

def test_minimal_fomm_gets_the_official_defaults():
    config = parse_config(copy.deepcopy(FOMM), P)
    assert config.kind == "fomm" and config.path == P
    assert config.frame_shape == (256, 256, 3) and config.size == (256, 256)
    assert config.train is None and config.dataset == {} and config.swap_index == (1, 2, 5)
    model = config.model
    assert model.estimate_jacobian is False
    assert model.kp_detector == KeypointDetectorParams(4, 8, 1, 0.1, 1, False, 0)
    assert model.generator.dense_motion_params == DenseMotionParams(4, 8, 1, 1, 0.01)
    assert model.generator.estimate_occlusion_map is False
    assert model.discriminator == DiscriminatorParams((1,), 32, 512, 4, False, False, 0.01)


def test_minimal_coseg_and_its_size():
    config = parse_config(edited(COSEG, dataset_params={"image_shape": [32, 48, 3]}), P)
    assert config.kind == "coseg" and config.frame_shape == (32, 48, 3) and config.size == (32, 48)
    assert config.model.num_segments == 3 and config.model.estimate_affine_part is False
    assert config.model.reconstruction.max_features == 4  # equal to block_expansion is enough
    assert config.model.segmentation.temperature == 0.2


def test_frame_shape_wins_over_image_shape_and_sections_pass_through():
    dataset = {"frame_shape": [16, 24, 3], "image_shape": [8, 8, 3], "root_dir": "anything",
               "augmentation_params": {"flip_param": None, "jitter_param": {"hue": 0.5}}}
    # animate_params (the official demo's section) is accepted and not read, whatever it holds
    config = parse_config(edited(FOMM, dataset_params=dataset, animate_params="anything",
                                 part_swap_params={"swap_index": [0, 3]}), P)
    assert config.frame_shape == (16, 24, 3) and config.dataset == dataset and config.swap_index == (0, 3)
    empty = parse_config(edited(FOMM, dataset_params=None, part_swap_params=None), P)
    assert empty.dataset == {} and empty.swap_index == (1, 2, 5)
    nulls = parse_config(edited(FOMM, dataset_params={"augmentation_params": None}), P)
    assert nulls.dataset == {"augmentation_params": None}


def test_train_section():
    train = dict(TRAIN, lr_generator=2, lr_kp_detector=1.5e-4, scales=[1, 0.5],
                 transform_params={"points_tps": 3}, loss_weights={"perceptual": [1, 2], "equivariance": 4})
    config = parse_config(edited(FOMM, train_params=train), P)
    assert config.train.learning_rates == {"generator": 2.0, "kp_detector": 1.5e-4}
    assert type(config.train.learning_rates["generator"]) is float
    assert config.train.scales == (1, 0.5) and config.train.num_repeats == 1 and config.train.checkpoint_freq == 50
    assert config.train.transform_params == TransformParams(0.05, 0.005, 3)
    assert config.train.loss_weights.perceptual == (1, 2) and config.train.loss_weights.equivariance == 4
    assert config.train.loss_weights.feature_matching == ()
    plain = parse_config(edited(FOMM, train_params=dict(TRAIN)), P).train
    assert plain.learning_rates == {} and plain.transform_params == TransformParams()
    assert plain.scales == (1, 0.5, 0.25, 0.125) and plain.loss_weights.perceptual == (10, 10, 10, 10, 10)


# --- every message, in full ---

MAPPING = "expected a mapping of keys (indented key: value lines)"
BAD = [
    ([], f"{P}: no 'model_params' section; this is not a first-order-model or motion-cosegmentation config "
         "(e.g. config/vox-256.yaml)"),
    ({"dataset_params": {}}, f"{P}: no 'model_params' section; this is not a first-order-model or "
                             "motion-cosegmentation config (e.g. config/vox-256.yaml)"),
    ({"model_params": 5}, f"{P}: model_params is 5; {MAPPING}"),
    ({"model_params": {"common_params": {}}},
     f"{P}: model_params has neither kp_detector_params (First Order Motion Model) nor segmentation_module_params "
     "(co-part segmentation)"),
    (put(FOMM, "model_params.common_params", DELETE),
     f"{P}: missing section 'model_params.common_params'; add it (see the official configs)"),
    (put(FOMM, "model_params.generator_params", DELETE),
     f"{P}: missing section 'model_params.generator_params'; add it (see the official configs)"),
    (put(FOMM, "model_params.generator_params.dense_motion_params", DELETE),
     f"{P}: missing section 'model_params.generator_params.dense_motion_params'; add it (see the official configs)"),
    (put(COSEG, "model_params.reconstruction_module_params", DELETE),
     f"{P}: missing section 'model_params.reconstruction_module_params'; add it (see the official configs)"),
    (put(COSEG, "model_params.common_params", DELETE),
     f"{P}: missing section 'model_params.common_params'; add it (see the official configs)"),
    (put(FOMM, "model_params.kp_detector_params", "x"),
     f"{P}: model_params.kp_detector_params is the text 'x'; {MAPPING}"),
    (put(COSEG, "model_params.segmentation_module_params", 3),
     f"{P}: model_params.segmentation_module_params is 3; {MAPPING}"),
    (put(COSEG, "model_params.reconstruction_module_params", None),
     f"{P}: model_params.reconstruction_module_params is empty (null); {MAPPING}"),
    (put(FOMM, "model_params.generator_params.dense_motion_params", 2.5),
     f"{P}: model_params.generator_params.dense_motion_params is 2.5; {MAPPING}"),
    (put(FOMM, "model_params.common_params.zeta", 1),
     f"{P}: unknown key 'model_params.common_params.zeta' (known: estimate_jacobian, num_channels, num_kp); "
     "fix the spelling or use a config written for this model"),
    (put(put(FOMM, "model_params.common_params.b", 1), "model_params.common_params.a", 1),
     f"{P}: unknown key 'model_params.common_params.a' (known: estimate_jacobian, num_channels, num_kp); "
     "fix the spelling or use a config written for this model"),
    (put(COSEG, "model_params.segmentation_module_params.pad", 1),
     f"{P}: unknown key 'model_params.segmentation_module_params.pad' (known: block_expansion, max_features, "
     "num_blocks, scale_factor, temperature); fix the spelling or use a config written for this model"),
    (put(FOMM, "model_params.discriminator_params", {"scale": [1]}),
     f"{P}: unknown key 'model_params.discriminator_params.scale' (known: block_expansion, kp_variance, "
     "max_features, num_blocks, scales, sn, use_kp); fix the spelling or use a config written for this model"),
    (put(FOMM, "model_params.common_params.num_kp", DELETE),
     f"{P}: missing key 'model_params.common_params.num_kp'; add it (see the official configs)"),
    (put(put(FOMM, "model_params.common_params.num_kp", DELETE), "model_params.common_params.num_channels", DELETE),
     f"{P}: missing key 'model_params.common_params.num_kp'; add it (see the official configs)"),
    (put(FOMM, "model_params.generator_params.dense_motion_params.num_blocks", DELETE),
     f"{P}: missing key 'model_params.generator_params.dense_motion_params.num_blocks'; "
     "add it (see the official configs)"),
    (put(FOMM, "model_params.generator_params.num_down_blocks", DELETE),
     f"{P}: missing key 'model_params.generator_params.num_down_blocks'; add it (see the official configs)"),
    (put(COSEG, "model_params.segmentation_module_params.temperature", DELETE),
     f"{P}: missing key 'model_params.segmentation_module_params.temperature'; add it (see the official configs)"),
    (put(FOMM, "model_params.common_params.num_kp", "ten"),
     f"{P}: model_params.common_params.num_kp is the text 'ten'; expected a whole number >= 1"),
    (put(FOMM, "model_params.common_params.estimate_jacobian", None),
     f"{P}: model_params.common_params.estimate_jacobian is empty (null); expected true or false"),
    (put(FOMM, "model_params.common_params.num_kp", True),
     f"{P}: model_params.common_params.num_kp is true; expected a whole number >= 1"),
    (put(FOMM, "model_params.common_params.num_kp", False),
     f"{P}: model_params.common_params.num_kp is false; expected a whole number >= 1"),
    (put(FOMM, "model_params.kp_detector_params.max_features", 3),
     f"{P}: model_params.kp_detector_params.max_features is 3; expected at least "
     "model_params.kp_detector_params.block_expansion (4), the width of the first layer"),
    (put(COSEG, "model_params.reconstruction_module_params.max_features", 2),
     f"{P}: model_params.reconstruction_module_params.max_features is 2; expected at least "
     "model_params.reconstruction_module_params.block_expansion (4), the width of the first layer"),
    (put(FOMM, "model_params.generator_params.dense_motion_params.kp_variance", 0),
     f"{P}: model_params.generator_params.dense_motion_params.kp_variance is 0; expected a finite number > 0"),
    (put(FOMM, "model_params.kp_detector_params.scale_factor", 2),
     f"{P}: model_params.kp_detector_params.scale_factor is 2; expected a number in (0, 1], at least 1/256"),
    (edited(FOMM, dataset_params={"frame_shape": [8, 8, 1]}),
     f"{P}: dataset_params frame shape [8, 8, 1] must be [height, width, 3] to match "
     "model_params.common_params.num_channels"),
    (edited(COSEG, dataset_params={"image_shape": [8, 8, 4]}),
     f"{P}: dataset_params frame shape [8, 8, 4] must be [height, width, 3] to match "
     "model_params.common_params.num_channels"),
    (edited(FOMM, dataset_params=[1]), f"{P}: dataset_params is [1]; {MAPPING}"),
    (edited(FOMM, dataset_params={"augmentation_params": {"flip_param": 5}}),
     f"{P}: dataset_params.augmentation_params.flip_param is 5; {MAPPING}"),
    (edited(FOMM, dataset_params={"augmentation_params": {"jitter_param": {"hue": 0.7}}}),
     f"{P}: dataset_params.augmentation_params.jitter_param.hue is 0.7; expected a number in [0, 0.5]"),
    (edited(FOMM, dataset_params={"image_shape": [8, 8]}),
     f"{P}: dataset_params.image_shape is [8, 8]; expected a list of 3 items, each item a whole number >= 1"),
    (edited(FOMM, part_swap_params=[1]), f"{P}: part_swap_params is [1]; {MAPPING}"),
    (edited(FOMM, part_swap_params={"swap_index": []}),
     f"{P}: part_swap_params.swap_index is []; expected a list (non-empty), each item a whole number >= 0"),
    (edited(FOMM, train_params=None), f"{P}: train_params is empty (null); {MAPPING}"),
    (edited(FOMM, train_params={"batch_size": 2}),
     f"{P}: missing key 'train_params.num_epochs'; add it (see the official configs)"),
    (edited(FOMM, train_params=dict(TRAIN, lr_generator="x")),
     f"{P}: train_params.lr_generator is the text 'x'; expected a finite number > 0"),
    (edited(FOMM, train_params=dict(TRAIN, lr_generator=0)),
     f"{P}: train_params.lr_generator is 0; expected a finite number > 0"),
    (edited(FOMM, train_params={**TRAIN, "zz": 1, 7: 1}),  # keys of mixed types sort as text
     f"{P}: unknown key 'train_params.7' (known: anchor_keypoints, batch_size, checkpoint_freq, epoch_milestones, num_epochs, "
     "num_repeats, scales); fix the spelling or use a config written for this model"),
    (edited(FOMM, train_params=dict(TRAIN, transform_params={"sigma_affine": -1})),
     f"{P}: train_params.transform_params.sigma_affine is -1; expected a finite number >= 0"),
    (edited(FOMM, train_params=dict(TRAIN, loss_weights={"perceptual": 3})),
     f"{P}: train_params.loss_weights.perceptual is 3; expected a list (non-empty), each item a finite number >= 0"),
    (edited(FOMM, train_params=dict(TRAIN, loss_weights=[])), f"{P}: train_params.loss_weights is []; {MAPPING}"),
]


@pytest.mark.parametrize("values, expected", BAD, ids=range(len(BAD)))
def test_message_in_full(values, expected):
    assert message(values) == expected


def test_parse_config_names_an_unnamed_config():
    with pytest.raises(ConfigError) as caught:
        parse_config({"model_params": []})
    assert str(caught.value) == f"<config>: model_params is []; {MAPPING}"


def test_shown_values_in_messages():
    def shown(value) -> str:
        text = message(put(FOMM, "model_params.common_params.num_kp", value))
        prefix, suffix = f"{P}: model_params.common_params.num_kp is ", "; expected a whole number >= 1"
        assert text.startswith(prefix) and text.endswith(suffix), text
        return text[len(prefix):-len(suffix)]

    assert shown([0] * 20) == "[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]"  # 60 characters: whole
    assert shown([0] * 21) == "[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,..."  # 63: cut to 57 + ...
    assert shown([10] + [0] * 19) == "[10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0..."  # 61: cut
    assert shown("x" * 70) == "the text '" + "x" * 56 + "..."
    assert shown("5e-4") == "the text '5e-4' (YAML reads a number without a dot as text; write 5.0e-4)"
    assert shown("-2E+5") == "the text '-2E+5' (YAML reads a number without a dot as text; write -2.0e+5)"
    assert shown("5.0e-4") == "the text '5.0e-4'"
    assert shown("5e-4x") == "the text '5e-4x'"
    assert shown(10.5) == "10.5"
    assert shown({"a": 1}) == "{'a': 1}"


def test_load_config_messages(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert str(caught.value) == (f"config file {missing} does not exist; pass --config with the path of a YAML "
                                 "config (e.g. checkpoints/NAME.yaml)")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)  # a folder
    assert str(caught.value).startswith(f"cannot read config file {tmp_path}: [Errno 21] Is a directory")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00model")
    with pytest.raises(ConfigError) as caught:
        load_config(binary)
    assert str(caught.value).startswith(f"cannot read config file {binary}: 'utf-8' codec can't decode byte 0xff")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model_params: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_config(broken)
    assert str(caught.value) == f"config file {broken} is not valid YAML: while parsing a flow sequence"
    good = tmp_path / "good.yaml"
    good.write_text("model_params:\n  common_params: {num_segments: 2, num_channels: 3}\n"
                    "  segmentation_module_params: {block_expansion: 4, max_features: 8, num_blocks: 1, "
                    "temperature: 0.1}\n  reconstruction_module_params: {block_expansion: 4, max_features: 8, "
                    "num_down_blocks: 1, num_bottleneck_blocks: 0}\n")
    config = load_config(str(good))
    assert config.path == str(good) and config.kind == "coseg"
