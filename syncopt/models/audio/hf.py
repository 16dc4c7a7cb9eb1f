"""wav2vec 2.0, HuBERT, wav2vec2-Conformer and the Whisper encoder from transformers config classes.

Nothing is ever downloaded: models are built from config objects, and pretrained weights come
from a local ``from_pretrained`` directory (:func:`load_pretrained_dir`). Each backbone adopts
the submodules of the transformers base model (``Wav2Vec2Model``, ``HubertModel``,
``Wav2Vec2ConformerModel``, ``WhisperEncoder``), so its state-dict keys are transformers' own
and that model's ``model.safetensors`` loads strictly; only ``forward`` is ours. Attention is
transformers' eager implementation (matmul + softmax).

25 Hz alignment (16 kHz audio, 640 samples per video frame, input ``(B, 1, 640 T)``):

* wav2vec2 / HuBERT / Conformer: the conv feature encoder has a 400-sample receptive field
  and a 320-sample stride. Padding the waveform with 40 zeros on each side gives exactly
  ``2 T`` frames, frame ``2t`` centred at sample ``640 t + 160`` and ``2t + 1`` at
  ``640 t + 480``; the mean of each pair is centred on video frame ``t``.
* Whisper: the log-mel input is computed in-model (a DFT Conv1d, transformers' Slaney mel
  filters, Whisper's ``log10``, ``max - 8`` floor and ``(x + 4) / 4`` scaling). Its STFT frames
  are transformers' centred frames with the *first* frame dropped instead of the last (reflect
  padding 40 | 200), giving ``4 T`` mel frames centred at ``160 (j + 1)``; the stride-2 conv
  yields ``2 T`` frames centred at ``640 t + 160`` and ``640 t + 480``, pooled in pairs. The
  encoder runs on the clip's own length with the positional table sliced to it, so a clip may
  be 1 to 750 frames (Whisper's 1500 positions = 30 s); Whisper was trained on 30 s windows
  and short clips shift its features somewhat.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from syncopt.core.errors import UsageError, WeightsError
from syncopt.models.audio.spectral import dft_kernels, periodic_hann, power_spectrum
from syncopt.models.weights import check_compatible, load_state_dict

CONV_EDGE_PAD = 40  # (receptive field 400 - stride 320) / 2 samples each side
WHISPER_N_FFT, WHISPER_HOP = 400, 160
WHISPER_PAD = (WHISPER_N_FFT // 2 - WHISPER_HOP, WHISPER_N_FFT // 2)  # drop the first centred frame


@dataclass(frozen=True)
class HFFamily:
    """How to build one transformers model family and match its checkpoints."""

    config_class: str
    model_class: str  # "module:Class" under transformers.models
    model_type: str  # config.json "model_type"
    prefixes: tuple[str, ...]  # where task-head checkpoints keep the base model's keys
    architecture: tuple[str, ...]  # config fields that must agree for weights to mean the same thing
    presets: dict[str, dict[str, Any]]


_CONV_ARCH = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
              "conv_dim", "conv_kernel", "conv_stride", "conv_bias", "feat_extract_norm", "feat_extract_activation",
              "do_stable_layer_norm", "num_conv_pos_embeddings", "num_conv_pos_embedding_groups")
_TINY_CONV = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)

# Full presets are the released base checkpoints' configs: facebook/wav2vec2-base and
# facebook/hubert-base-ls960 are the transformers config defaults; openai/whisper-base's encoder
# (d_model 512, 6 layers, 8 heads; Radford et al. 2022, Table 1); facebook/wav2vec2-conformer-rel-pos-large.
FAMILIES: dict[str, HFFamily] = {
    "wav2vec2": HFFamily("Wav2Vec2Config", "wav2vec2.modeling_wav2vec2:Wav2Vec2Model", "wav2vec2", ("wav2vec2.",),
                         _CONV_ARCH, {"full": {}, "tiny": _TINY_CONV}),
    "hubert": HFFamily("HubertConfig", "hubert.modeling_hubert:HubertModel", "hubert", ("hubert.",),
                       _CONV_ARCH + ("feat_proj_layer_norm",), {"full": {}, "tiny": _TINY_CONV}),
    "conformer": HFFamily(
        "Wav2Vec2ConformerConfig", "wav2vec2_conformer.modeling_wav2vec2_conformer:Wav2Vec2ConformerModel",
        "wav2vec2-conformer", ("wav2vec2_conformer.",),
        _CONV_ARCH + ("position_embeddings_type", "conv_depthwise_kernel_size"),
        {"full": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                      feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
         "tiny": dict(_TINY_CONV, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)},
    ),
    "whisper": HFFamily(
        "WhisperConfig", "whisper.modeling_whisper:WhisperEncoder", "whisper", ("model.encoder.", "encoder."),
        ("d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "num_mel_bins",
         "max_source_positions", "activation_function", "scale_embedding"),
        {"full": dict(d_model=512, encoder_layers=6, encoder_attention_heads=8, encoder_ffn_dim=2048,
                      decoder_layers=6, decoder_attention_heads=8, decoder_ffn_dim=2048),
         "tiny": dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                      decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64)},
    ),
}


def _transformers() -> Any:
    # transformers probes torchao, whose import logs warnings about CUDA kernels and pytree
    # registrations that mean nothing on CPU; keep them off the user's terminal.
    for noisy in ("torchao", "torch.utils._pytree"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        import transformers
    except ImportError as exc:
        raise UsageError("this audio backbone needs transformers: pip install 'syncopt[transfer]'") from exc
    return transformers


class HFAudioBackbone(nn.Module):
    """A transformers base model's submodules under their own names, with a 25 Hz forward."""

    input_kind: Literal["waveform", "mfcc"] = "waveform"

    def __init__(self, name: str, hf_model: nn.Module) -> None:
        super().__init__()
        self.family = name
        self.config = hf_model.config
        for child_name, child in hf_model.named_children():
            self.add_module(child_name, child)
        for param_name, param in hf_model.named_parameters(recurse=False):
            self.register_parameter(param_name, param)
        for buf_name, buf in hf_model.named_buffers(recurse=False):
            self.register_buffer(buf_name, buf, persistent=buf_name not in hf_model._non_persistent_buffers_set)

    @staticmethod
    def pool_pairs(hidden: torch.Tensor) -> torch.Tensor:
        """``(B, 2T, C)`` at 50 Hz -> ``(B, C, T)``: the mean of each pair of frames."""
        return F.avg_pool1d(hidden.transpose(1, 2), 2)


class Wav2Vec2LikeBackbone(HFAudioBackbone):
    """wav2vec 2.0 / HuBERT / Conformer: conv feature encoder, projection, transformer encoder.

    ``normalize`` applies the per-clip zero-mean unit-variance scaling of the checkpoint's
    feature extractor (``do_normalize``: true for wav2vec2-base, false for hubert-base-ls960).
    """

    def __init__(self, name: str, hf_model: nn.Module, normalize: bool) -> None:
        super().__init__(name, hf_model)
        self.normalize = normalize
        self.out_channels = self.config.hidden_size

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        wave = audio[:, 0]
        if self.normalize:  # transformers' zero_mean_unit_var_norm: population variance + 1e-7
            mean = wave.mean(dim=1, keepdim=True)
            wave = (wave - mean) / torch.sqrt(((wave - mean) ** 2).mean(dim=1, keepdim=True) + 1e-7)
        feats = self.feature_extractor(F.pad(wave, (CONV_EDGE_PAD, CONV_EDGE_PAD)))  # (B, C, 2T)
        hidden = self.feature_projection(feats.transpose(1, 2))
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden  # wav2vec2 also returns the normed features
        return self.pool_pairs(self.encoder(hidden)[0])


class WhisperEncoderBackbone(HFAudioBackbone):
    """Whisper's encoder on in-model log-mel features, at the clip's own length."""

    def __init__(self, name: str, hf_model: nn.Module) -> None:
        super().__init__(name, hf_model)
        from transformers.audio_utils import mel_filter_bank

        self.out_channels = self.config.d_model
        self.max_frames = self.config.max_source_positions // 2  # 2 encoder positions per video frame
        filters = mel_filter_bank(num_frequency_bins=WHISPER_N_FFT // 2 + 1, num_mel_filters=self.config.num_mel_bins,
                                  min_frequency=0.0, max_frequency=8000.0, sampling_rate=16000, norm="slaney",
                                  mel_scale="slaney")  # as WhisperFeatureExtractor
        self.register_buffer("dft", dft_kernels(WHISPER_N_FFT, periodic_hann(WHISPER_N_FFT)), persistent=False)
        self.register_buffer("mel_filters", torch.tensor(np.asarray(filters).T, dtype=torch.float32), persistent=False)

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 640 T)`` -> ``(B, num_mel_bins, 4 T)`` Whisper-scaled log-mel."""
        power = power_spectrum(F.pad(audio, WHISPER_PAD, mode="reflect"), self.dft, WHISPER_HOP)
        logmel = torch.log10(torch.clamp(torch.matmul(self.mel_filters, power), min=1e-10))
        logmel = torch.maximum(logmel, logmel.amax(dim=(1, 2), keepdim=True) - 8.0)
        return (logmel + 4.0) / 4.0

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.pool_pairs(self.encode(self.log_mel(audio)))

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, num_mel_bins, N)`` -> ``(B, N / 2, d_model)``: WhisperEncoder.forward, any even ``N <= 3000``."""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, 2T, C)
        x = x + self.embed_positions.weight[: x.shape[1]]
        x = F.dropout(x, p=self.config.dropout, training=self.training)
        for layer in self.layers:
            x = layer(x, None)
        return self.layer_norm(x)


def build_hf_backbone(name: str, preset: str) -> HFAudioBackbone:
    """Build ``name`` (a key of :data:`FAMILIES`) at ``preset`` from its config class, randomly initialised."""
    transformers = _transformers()
    family = FAMILIES[name]
    # layerdrop 0: every layer always runs, so forward has no random control flow.
    extra = {"encoder_layerdrop": 0.0} if name == "whisper" else {"layerdrop": 0.0}
    config = getattr(transformers, family.config_class)(**family.presets[preset], **extra,
                                                        attn_implementation="eager")
    module, cls = family.model_class.split(":")
    hf_model = getattr(importlib.import_module(f"transformers.models.{module}"), cls)(config).eval()
    if name == "whisper":
        return WhisperEncoderBackbone(name, hf_model)
    return Wav2Vec2LikeBackbone(name, hf_model, normalize=name == "wav2vec2")


def load_pretrained_dir(backbone: HFAudioBackbone, directory: str | os.PathLike) -> HFAudioBackbone:
    """Strictly load a local transformers ``from_pretrained`` directory into ``backbone``.

    ``config.json`` must describe the same architecture; weights come from ``model.safetensors``
    (optionally sharded) or ``pytorch_model.bin`` (``weights_only``). Task-head checkpoints
    (``Wav2Vec2ForCTC``, ``WhisperForConditionalGeneration`` ...) keep the base model under a
    prefix; that part must match exactly and anything outside it (heads, decoder) is ignored.
    """
    transformers = _transformers()
    family = FAMILIES[backbone.family]
    root = Path(directory)
    what = f"{backbone.family} backbone"
    config_path = root / "config.json"
    if not config_path.is_file():
        raise WeightsError(f"{root} is not a from_pretrained directory: no config.json")
    try:
        model_type = json.loads(config_path.read_text()).get("model_type")
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read {config_path}: {type(exc).__name__}") from exc
    if model_type != family.model_type:
        raise WeightsError(f"{root} holds a '{model_type}' model, not {family.model_type} ({what})")
    theirs = getattr(transformers, family.config_class).from_pretrained(str(root), local_files_only=True)
    diffs = [f"{k} {_plain(getattr(theirs, k, None))} vs {_plain(getattr(backbone.config, k, None))}"
             for k in family.architecture
             if _plain(getattr(theirs, k, None)) != _plain(getattr(backbone.config, k, None))]
    if diffs:
        raise WeightsError(f"config.json in {root} does not match the {what}: " + "; ".join(diffs[:4]))
    state = _select_prefix(_read_weights(root), set(backbone.state_dict()), family.prefixes)
    check_compatible(backbone, state, f"{what} (from {root.name})")
    backbone.load_state_dict(state, strict=True)
    return backbone


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _read_weights(root: Path) -> dict[str, torch.Tensor]:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (root / index_name).is_file():
            shards = sorted(set(json.loads((root / index_name).read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(load_state_dict(root / shard))
            return state
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (root / name).is_file():
            return load_state_dict(root / name)
    raise WeightsError(f"{root} has no model.safetensors or pytorch_model.bin")


def _select_prefix(state: dict[str, torch.Tensor], own: set[str], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The part of ``state`` under the prefix that matches most of ``own``, prefix removed.

    Old checkpoints' weight-norm names (``weight_g``/``weight_v``) are renamed as transformers
    does on load (its ``conversion_mapping`` "legacy" renames).
    """
    def under(prefix: str) -> dict[str, torch.Tensor]:
        renamed = {k.replace(".weight_g", ".parametrizations.weight.original0")
                   .replace(".weight_v", ".parametrizations.weight.original1"): v for k, v in state.items()}
        return {k[len(prefix):]: v for k, v in renamed.items() if k.startswith(prefix)}

    return max((under(p) for p in ("",) + prefixes), key=lambda s: len(own & set(s)))
