"""Model registry: name -> builder, presets and summary. ``create`` is the public entry point."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from syncopt.core.errors import UsageError

Builder = Callable[[str], nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Builder
    presets: tuple[str, ...]
    summary: str


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, summary: str, presets: tuple[str, ...] = ("tiny", "full")) -> Callable[[Builder], Builder]:
    """Decorator registering ``build(preset) -> nn.Module`` under ``name``."""

    def wrap(build: Builder) -> Builder:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = ModelEntry(name, build, presets, summary)
        return build

    return wrap


def _load_builtin_models() -> None:
    import syncopt.models.builtin  # noqa: F401  (registers the built-in models)


def model_names() -> list[str]:
    """Registered model names, in registration order."""
    _load_builtin_models()
    return list(_MODELS)


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; :class:`UsageError` with suggestions if unknown."""
    _load_builtin_models()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else f" (known: {', '.join(_MODELS)})"
        raise UsageError(f"unknown model '{name}'{hint}")
    return _MODELS[name]


def create(name: str, preset: str = "full", weights: str | os.PathLike | None = None,
           video_weights: str | os.PathLike | None = None,
           audio_weights: str | os.PathLike | None = None) -> nn.Module:
    """Build a registered model in eval mode; its :class:`~syncopt.core.spec.ModelSpec` is ``model.spec``.

    ``weights`` is a local state-dict file of the whole model (safetensors or a ``torch.save``d
    dict), loaded strictly; one holding several members' tensors (``members.<i>.*``), or mirror views
    (``mirror_index``), builds an output ensemble of them (:class:`~syncopt.models.ensemble.SyncEnsemble`). Transfer models also take
    pretrained backbones in their reference libraries' layouts: ``video_weights`` (a checkpoint file) and
    ``audio_weights`` (a file, or a local transformers ``from_pretrained`` directory).
    """
    entry = get_entry(name)
    if preset not in entry.presets:
        raise UsageError(f"model '{name}' has no preset '{preset}' (presets: {', '.join(entry.presets)})")
    model = entry.build(preset)
    if video_weights is not None or audio_weights is not None:
        if not hasattr(model, "load_pretrained"):
            raise UsageError(f"model '{name}' has no pretrained backbones; pass its own checkpoint as weights=")
        model.load_pretrained(video_weights, audio_weights)
    if weights is not None:
        from syncopt.models.ensemble import SyncEnsemble, members_in, mirrored_in
        from syncopt.models.weights import load_into, load_state_dict

        state = load_state_dict(weights)
        count, mirror = members_in(state), mirrored_in(state)
        if count > 1 or mirror:  # an output ensemble (syncopt ensemble)
            model = SyncEnsemble([model, *(entry.build(preset) for _ in range(count - 1))], mirror=mirror)
        load_into(model, weights, f"{name} (preset {preset})", state)
    return model.eval()
