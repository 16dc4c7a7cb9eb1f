"""Architectures of pruned models, stored inside their safetensors weights.

A pruned model has fewer channels than a fresh build of its registered name. :func:`record` notes
the sizes of every resized layer (size attributes such as ``out_channels`` and the shapes of its
parameters and buffers) on the model; :func:`syncopt.models.weights.save_state_dict` writes them as JSON
under :data:`METADATA_KEY` in the file's header (safetensors ``__metadata__``, a str -> str map:
huggingface.co/docs/safetensors, "Format"), and :func:`syncopt.models.weights.load_into` replays them on
a fresh build with :func:`apply` before loading the tensors. So ``create(name, preset, weights=...)``
— and everything built on it: export, parity, bench, bundle, sync — loads pruned checkpoints like
any other. Replaying only shrinks layers of the named model: a file cannot set other attributes
or grow a tensor.
"""

from __future__ import annotations

import json

import torch
from torch import nn

from syncopt.core.errors import WeightsError

METADATA_KEY = "syncopt.architecture"
_ATTRIBUTE = "resized_layers"  # where a resized model keeps its architecture (saved with its weights)
_SIZE_ATTRS = ("in_channels", "out_channels", "groups", "num_features", "in_features", "out_features")


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]}


def record(model: nn.Module) -> dict:
    """Note on ``model`` (and return) the sizes of every layer that differs from a fresh build."""
    from syncopt.models.registry import create

    fresh = dict(create(model.spec.name, model.spec.preset).named_modules())
    layers = {}
    for name, module in model.named_modules():
        shapes = {k: list(v.shape) for k, v in _tensors(module).items()}
        ref = fresh.get(name)
        if shapes and (ref is None or shapes != {k: list(v.shape) for k, v in _tensors(ref).items()}):
            layers[name] = {"attrs": {a: getattr(module, a) for a in _SIZE_ATTRS if hasattr(module, a)},
                            "shapes": shapes}
    arch = {"model": model.spec.name, "preset": model.spec.preset, "layers": layers}
    setattr(model, _ATTRIBUTE, arch)
    return arch


def metadata(model: nn.Module) -> dict[str, str]:
    """The safetensors metadata that carries ``model``'s architecture (empty if it was never resized)."""
    arch = getattr(model, _ATTRIBUTE, None)
    return {METADATA_KEY: json.dumps(arch, separators=(",", ":"))} if arch else {}


def apply(model: nn.Module, text: str, what: str) -> nn.Module:
    """Shrink a fresh ``model``'s layers to the architecture JSON ``text``; its weights load afterwards."""
    try:
        arch = json.loads(text)
        name, preset, layers = arch["model"], arch["preset"], dict(arch["layers"])
    except (ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"weights for {what} carry a malformed pruned architecture ({type(exc).__name__})") from exc
    if (name, preset) != (model.spec.name, model.spec.preset):
        raise WeightsError(f"weights are a pruned {name} (preset {preset}), not {what}")
    modules = dict(model.named_modules())
    for layer_name, layer in layers.items():
        module = modules.get(layer_name)
        if module is None:
            raise WeightsError(f"pruned architecture names layer {layer_name!r}, which {what} does not have")
        try:
            _shrink(module, layer["attrs"], layer["shapes"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WeightsError(f"pruned architecture of layer {layer_name!r} does not fit {what}: {exc}") from exc
    setattr(model, _ATTRIBUTE, arch)
    return model


def _shrink(module: nn.Module, attrs: dict, shapes: dict) -> None:
    bad = [a for a, v in attrs.items() if a not in _SIZE_ATTRS or not hasattr(module, a) or type(v) is not int]
    if bad:
        raise ValueError(f"size attributes {bad} are not integer sizes of a {type(module).__name__}")
    tensors = _tensors(module)
    for key, shape in shapes.items():
        old = tensors[key]
        if len(shape) != old.dim() or any(type(s) is not int or not 0 < s <= o for s, o in zip(shape, old.shape)):
            raise ValueError(f"{key} shape {shape} is not a shrunk {list(old.shape)}")
    for attr, value in attrs.items():
        setattr(module, attr, value)
    for key, shape in shapes.items():
        old = tensors[key]
        new = torch.empty(shape, dtype=old.dtype)  # filled by the strict load that follows
        if isinstance(old, nn.Parameter):
            setattr(module, key, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            module.register_buffer(key, new)
