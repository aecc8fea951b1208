"""Checkpoint files in the official layouts: a torch.save'd dict of state_dicts (plus optimizer
states and 'epoch'). Read with weights_only=True, so a checkpoint can never run code."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from motion.config import Config
from motion.errors import UserError, first_line

INFERENCE_KEYS = {"fomm": ("kp_detector", "generator"), "coseg": ("segmentation_module", "reconstruction_module")}
MODEL_NAMES = {"fomm": "a First Order Motion Model", "coseg": "a co-part segmentation model"}
# A co-part model may start from a FOMM checkpoint: the segmentation module takes the keypoint
# detector's weights under these names, the reconstruction module the generator's encoder/decoder.
FOMM_TO_COSEG = {"segmentation_module": ("kp_detector", {"kp.": "shift.", "jacobian.": "affine.",
                                                         "semantic_seg.": "segmentation."}),
                 "reconstruction_module": ("generator", {})}


class CheckpointError(UserError):
    """A checkpoint that cannot be used; the message names the file, the problem and the fix."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass --checkpoint with a .pth.tar file "
                              "(e.g. checkpoints/NAME.pth.tar or the official vox-cpk.pth.tar)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):
            raise CheckpointError(f"checkpoint {path} contains Python objects that could run code, so it is "
                                  "refused; re-save it as a dict of state_dicts (torch.save({'generator': "
                                  "g.state_dict(), ...}))") from None
        raise CheckpointError(f"checkpoint {path} is not a PyTorch checkpoint (unpickling failed); pass the "
                              ".pth.tar file saved by training") from None
    except Exception as err:  # torch.load raises many types (RuntimeError, KeyError, EOFError, ...) for junk
        raise CheckpointError(f"checkpoint {path} is not a readable PyTorch checkpoint ({first_line(err)}); "
                              "pass the .pth.tar file saved by training") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, not a dict of state_dicts; "
                              "pass a checkpoint in the first-order-model or motion-cosegmentation layout")
    return data


def _describe(data: dict[str, Any]) -> str:
    kinds = [kind for kind, keys in INFERENCE_KEYS.items() if all(k in data for k in keys)]
    found = ", ".join(sorted(str(k) for k in data)) or "nothing"
    return f"entries {found}" + (f" ({MODEL_NAMES[kinds[0]]} checkpoint)" if kinds else "")


def check_state_dict(module: nn.Module, state: Any, name: str, path: str | Path) -> None:
    """Strict key and shape check with a message that names the offending keys."""
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: entry '{name}' is not a state_dict")
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)} in the config"
             for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", wrong)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            problems.append(f"{label}: {', '.join(keys[:3])}{more}")
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit the config for '{name}' ({'; '.join(problems)}); "
                              "pass the config the checkpoint was trained with")


def _grown(own: torch.Tensor, value: torch.Tensor) -> torch.Tensor | None:
    """``own`` with its leading entries along dim 0 replaced by ``value``'s, when only dim 0 differs and
    ``own`` is the larger (a head with more output channels: more parts or keypoints); else None."""
    if own.dim() == 0 or own.shape[1:] != value.shape[1:] or own.shape[0] <= value.shape[0]:
        return None
    out = own.clone()
    out[:value.shape[0]] = value
    return out


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], renames: dict[str, str] | None = None,
                  grow: bool = False) -> int:
    """Copy the tensors whose (renamed) key and shape fit; returns how many were taken.

    With ``grow``, a tensor that only has more output channels than the saved one keeps its fresh
    initialisation in the extra channels and takes the saved ones in the others.
    """
    own = module.state_dict()
    taken = {}
    for key, value in state.items():
        for old, new in (renames or {}).items():
            if key.startswith(old):
                key = new + key[len(old):]
        if key not in own:
            continue
        if own[key].shape == value.shape:
            taken[key] = value
        elif grow and (grown := _grown(own[key], value)) is not None:
            taken[key] = grown
    module.load_state_dict(taken, strict=False)
    return len(taken)


def start_coseg_from_fomm(nets: dict[str, nn.Module], data: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """A co-part model starts training from a FOMM checkpoint as the official co-seg loader does (kp ->
    shift, jacobian -> affine, shared encoder/decoder where shapes fit): {network: (taken, total)}."""
    return {name: (load_matching(nets[name], data[source], renames), len(nets[name].state_dict()))
            for name, (source, renames) in FOMM_TO_COSEG.items()}


def check_finite(nets: dict[str, nn.Module], path: str | Path) -> None:
    """NaN or infinite weights (a diverged run) would render black frames without a word: refuse them."""
    for name, net in nets.items():
        for key, value in net.state_dict().items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise CheckpointError(f"checkpoint {path}: {name}.{key} holds NaN or infinite values (a diverged "
                                      "training run?); use an earlier checkpoint")


def load_state(nets: dict[str, nn.Module], data: dict[str, Any], config: Config, path: str | Path) -> None:
    """Load the inference networks of ``config.kind`` from a checkpoint dict, strictly; a FOMM checkpoint
    for a co-part config is refused here (its segmentation heads would be random): training can start
    from one with `train --init`."""
    wanted = INFERENCE_KEYS[config.kind]
    if all(k in data for k in wanted):
        for name in wanted:
            check_state_dict(nets[name], data[name], name, path)
            nets[name].load_state_dict(data[name], strict=True)
        check_finite(nets, path)
        return
    if config.kind == "coseg" and all(k in data for k in INFERENCE_KEYS["fomm"]):
        raise CheckpointError(f"checkpoint {path} is a First Order Motion Model, but {config.path} is a co-part "
                              "segmentation config: its part heads would be random. Pass a co-part checkpoint "
                              "(a co-part training run can start from this one with `train --init`)")
    raise CheckpointError(f"checkpoint {path} has {_describe(data)} but the config {config.path} describes "
                          f"{MODEL_NAMES[config.kind]} (needs {', '.join(wanted)}); pass the matching --config")


def save_checkpoint(path: str | Path, nets: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                    epoch: int, extra: dict[str, Any] | None = None) -> None:
    """Save in the official layout: {name: state_dict, 'optimizer_<name>': state, 'epoch': int}.

    Written to a temporary file first, so an interrupted save never destroys the previous checkpoint.
    """
    path = Path(path)
    data: dict[str, Any] = {name: net.state_dict() for name, net in nets.items()}
    data.update({f"optimizer_{name}": opt.state_dict() for name, opt in optimizers.items()})
    data["epoch"] = epoch
    data.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(data, tmp)
    tmp.replace(path)


def load_model(config: Config, path: str | Path, device: torch.device | str = "cpu") -> dict[str, nn.Module]:
    """Inference networks of ``config`` with the checkpoint's weights, in eval mode on ``device``."""
    return model_from_checkpoint(config, read_checkpoint(path), path, device)


def model_from_checkpoint(config: Config, data: dict[str, Any], path: str | Path,
                          device: torch.device | str = "cpu") -> dict[str, nn.Module]:
    """``load_model`` for a checkpoint already read (``path`` names it in errors), when its other entries
    are wanted too."""
    from motion.networks import build_networks

    nets = build_networks(config)
    load_state(nets, data, config, path)
    return {name: net.to(device).eval() for name, net in nets.items()}
