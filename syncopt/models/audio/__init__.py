"""Audio backbones for the two-tower sync models: name -> builder, and local weight loading.

Every backbone maps its input to per-frame features ``(B, out_channels, T)`` at 25 Hz, aligned
to the video frames, and says what it eats in ``input_kind``: ``"waveform"`` is 16 kHz mono
``(B, 1, 640 T)``, ``"mfcc"`` is SyncNet MFCC ``(B, 1, 13, 4 T)``. Presets: ``"full"`` (paper
size) and ``"tiny"`` (same topology, small widths, for tests and CPU training). transformers is
imported only when a transformers backbone is built.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from torch import nn

from syncopt.core.errors import UsageError, WeightsError
from syncopt.models.audio.mfcc_cnn import build_mfcc_cnn, build_mfcc_cnn_half
from syncopt.models.audio.vggish import build_vggish

PRESETS = ("tiny", "full")


def _hf(name: str) -> Callable[[str], nn.Module]:
    def build(preset: str) -> nn.Module:
        from syncopt.models.audio.hf import build_hf_backbone

        return build_hf_backbone(name, preset)

    return build


AUDIO_BACKBONES: dict[str, Callable[[str], nn.Module]] = {
    "mfcc_cnn": build_mfcc_cnn,
    "mfcc_cnn_half": build_mfcc_cnn_half,
    "vggish": build_vggish,
    "wav2vec2": _hf("wav2vec2"),
    "hubert": _hf("hubert"),
    "whisper": _hf("whisper"),
    "conformer": _hf("conformer"),
}


def build_audio_backbone(name: str, preset: str) -> nn.Module:
    """A randomly initialised audio backbone in eval mode."""
    if name not in AUDIO_BACKBONES:
        raise UsageError(f"unknown audio backbone '{name}' (known: {', '.join(AUDIO_BACKBONES)})")
    if preset not in PRESETS:
        raise UsageError(f"audio backbone '{name}' has no preset '{preset}' (presets: {', '.join(PRESETS)})")
    return AUDIO_BACKBONES[name](preset).eval()


def load_audio_weights(backbone: nn.Module, path_or_dir: str | os.PathLike) -> nn.Module:
    """Strictly load local weights into ``backbone``.

    A file is a state dict in the backbone's own key layout (safetensors or a ``torch.save``d
    dict, e.g. torchvggish's ``vggish-10086976.pth``). A directory is a transformers
    ``from_pretrained`` directory, accepted by the transformers backbones only.
    """
    from syncopt.models.weights import load_into

    path = Path(path_or_dir)
    what = f"{getattr(backbone, 'family', type(backbone).__name__)} audio backbone"
    if not path.is_dir():
        return load_into(backbone, path, what)
    from syncopt.models.audio.hf import HFAudioBackbone, load_pretrained_dir

    if not isinstance(backbone, HFAudioBackbone):
        raise WeightsError(f"{path} is a directory; the {what} takes a single weights file")
    return load_pretrained_dir(backbone, path)
