"""Audio backbones: shapes at 25 Hz, frame alignment, transformers key compatibility, ONNX parity, sizes."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch
from torch import nn

from syncopt.models.complexity import count_params
from syncopt.core.errors import UsageError, WeightsError
from syncopt.models.audio import AUDIO_BACKBONES, build_audio_backbone, load_audio_weights
from syncopt.models.audio.spectral import periodic_hann
from syncopt.models.audio.vggish import htk_mel_matrix
from syncopt.models.weights import save_state_dict

transformers = pytest.importorskip("transformers")

HF_NAMES = ("wav2vec2", "hubert", "whisper", "conformer")
HF_CLASSES = {"wav2vec2": "Wav2Vec2Model", "hubert": "HubertModel", "conformer": "Wav2Vec2ConformerModel"}


def _input(model: nn.Module, frames: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if model.input_kind == "mfcc":
        return torch.randn(batch, 1, 13, 4 * frames, generator=g)
    return 0.1 * torch.randn(batch, 1, 640 * frames, generator=g)


@pytest.fixture(scope="module")
def tiny() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {name: build_audio_backbone(name, "tiny") for name in AUDIO_BACKBONES}


@pytest.mark.parametrize("name", list(AUDIO_BACKBONES))
def test_tiny_returns_one_frame_per_video_frame(tiny, name):
    model = tiny[name]
    assert model.input_kind in ("waveform", "mfcc") and model.out_channels > 0
    for frames in (3, 17):
        with torch.no_grad():
            out = model(_input(model, frames))
        assert out.shape == (2, model.out_channels, frames)
        assert torch.isfinite(out).all()


# Published sizes (sources in docs/backbones.md, "Audio backbones").
PUBLISHED_PARAMS = {"wav2vec2": 95e6, "hubert": 95e6, "vggish": 72.1e6}


@pytest.mark.parametrize("name", list(AUDIO_BACKBONES))
def test_full_preset_builds_at_published_size(name):
    with torch.device("meta"):
        model = build_audio_backbone(name, "full")
    assert model.out_channels > 0
    if name in PUBLISHED_PARAMS:
        assert count_params(model) == pytest.approx(PUBLISHED_PARAMS[name], rel=0.05)
    if name == "whisper":  # the paper reports the whole model: 74M for base
        from transformers import WhisperModel

        with torch.device("meta"):
            whole = WhisperModel(model.config)
        assert count_params(whole) == pytest.approx(74e6, rel=0.05)
        assert count_params(model) == count_params(whole.encoder)


def test_unknown_names_are_usage_errors():
    with pytest.raises(UsageError, match="known"):
        build_audio_backbone("wav3vec", "tiny")
    with pytest.raises(UsageError, match="preset"):
        build_audio_backbone("vggish", "huge")


def test_missing_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(UsageError, match=r"syncopt\[transfer\]"):
        build_audio_backbone("hubert", "tiny")


# --- alignment to the video frames -------------------------------------------------------------

@pytest.mark.parametrize("name", HF_NAMES)
def test_click_in_frame_k_moves_output_frame_k_most(tiny, name):
    model = tiny[name]
    if name == "conformer":  # random relative-position layers smear time; check front end and pooling
        model = build_audio_backbone(name, "tiny")
        model.encoder.layers = nn.ModuleList()
    frames = 12
    base = _input(model, frames, batch=1, seed=1)
    for k in (0, 1, 5, frames - 1):
        hit = base.clone()
        centre = 640 * k + 320
        hit[..., centre - 40:centre + 40] += 0.3 * torch.hann_window(80)
        with torch.no_grad():
            change = (model(hit) - model(base)).norm(dim=1)[0]
        assert int(change.argmax()) == k, (name, k, change)


def test_vggish_frame_t_is_vggish_of_the_patch_centred_on_it(tiny):
    """Output t equals VGGish run on the 0.96 s patch centred at sample 640 t + 320 (numpy log-mel)."""
    model = tiny["vggish"]
    frames = 6
    wave = _input(model, frames, batch=1)[0, 0].double().numpy()
    half = (95 * 160 + 400) // 2  # 96 frames of 400 samples every 160
    padded = np.pad(wave, half)
    with torch.no_grad():
        out = model(torch.tensor(wave, dtype=torch.float32)[None, None])[0]
        for t in (0, 2, frames - 1):
            segment = padded[640 * t + 320: 640 * t + 320 + 2 * half]  # centred on 640 t + 320
            windows = np.lib.stride_tricks.sliding_window_view(segment, 400)[::160] * periodic_hann(400)
            log_mel = np.log(np.abs(np.fft.rfft(windows, 512)) @ htk_mel_matrix().T + 0.01)  # (96, 64)
            x = model.features(torch.tensor(log_mel, dtype=torch.float32)[None, None])
            expected = model.embeddings(x.permute(0, 2, 3, 1).flatten(1))[0]
            torch.testing.assert_close(out[:, t], expected, atol=1e-4, rtol=1e-4)


def test_mfcc_cnn_receptive_field_is_centred_in_its_frame(tiny):
    model = tiny["mfcc_cnn"]
    frames = 16
    mfcc = _input(model, frames, batch=1).requires_grad_(True)
    for t in (4, 8, 11):
        (grad,) = torch.autograd.grad(model(mfcc)[..., t].sum(), mfcc)
        steps = torch.nonzero(grad.abs().sum(dim=(0, 1, 2)))[:, 0]
        centre = (steps.min() + steps.max()).item() / 2
        assert 4 * t <= centre <= 4 * t + 3, (t, steps)


# --- transformers: same keys, same computation --------------------------------------------------

@pytest.mark.parametrize("name", ["wav2vec2", "hubert", "conformer"])
def test_forward_matches_transformers_model(tiny, name):
    backbone = tiny[name]
    reference = getattr(transformers, HF_CLASSES[name])(backbone.config).eval()
    reference.load_state_dict(backbone.state_dict(), strict=True)
    audio = _input(backbone, 5)
    wave = audio[:, 0]
    if backbone.normalize:
        wave = (wave - wave.mean(1, keepdim=True)) / torch.sqrt(wave.var(1, unbiased=False, keepdim=True) + 1e-7)
    with torch.no_grad():
        hidden = reference(nn.functional.pad(wave, (40, 40))).last_hidden_state  # (B, 2T, C)
        expected = hidden.reshape(2, 5, 2, -1).mean(2).transpose(1, 2)
        torch.testing.assert_close(backbone(audio), expected, atol=1e-5, rtol=1e-4)


def test_whisper_matches_transformers(tiny):
    from transformers import WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    backbone = tiny["whisper"]
    reference = WhisperEncoder(backbone.config).eval()
    reference.load_state_dict(backbone.state_dict(), strict=True)
    mel = torch.randn(1, backbone.config.num_mel_bins, 3000)
    with torch.no_grad():
        torch.testing.assert_close(backbone.encode(mel), reference(mel).last_hidden_state, atol=1e-5, rtol=1e-4)
    # In-model log-mel = WhisperFeatureExtractor's, one hop later (its first frame dropped, not its last).
    frames = 10
    audio = _input(backbone, frames, batch=1)
    theirs = WhisperFeatureExtractor()(audio[0, 0].numpy(), sampling_rate=16000, padding="longest",
                                       return_tensors="np")
    with torch.no_grad():
        ours = backbone.log_mel(audio)[0].numpy()
    assert ours.shape == (80, 4 * frames)
    np.testing.assert_allclose(ours[:, :-1], theirs["input_features"][0][:, 1:4 * frames], atol=2e-4)


def _save_pretrained(name: str, backbone: nn.Module, directory, head: bool = False) -> nn.Module:
    if name == "whisper":
        from transformers import WhisperForConditionalGeneration, WhisperModel

        model = (WhisperForConditionalGeneration if head else WhisperModel)(backbone.config)
    elif head:
        config = copy.deepcopy(backbone.config)
        config.vocab_size = config.vocab_size or 32  # the conformer config has no default vocabulary
        model = getattr(transformers, HF_CLASSES[name].replace("Model", "ForCTC"))(config)
    else:
        model = getattr(transformers, HF_CLASSES[name])(backbone.config)
    model.save_pretrained(str(directory))
    return model


@pytest.mark.parametrize("name", HF_NAMES)
@pytest.mark.parametrize("head", [False, True], ids=["base", "with_head"])
def test_save_pretrained_directory_loads_strictly(tiny, tmp_path, name, head):
    torch.manual_seed(1)
    saved = _save_pretrained(name, tiny[name], tmp_path, head=head)
    backbone = load_audio_weights(build_audio_backbone(name, "tiny"), tmp_path)
    base = saved.get_encoder() if name == "whisper" else getattr(saved, saved.base_model_prefix, saved)
    theirs = base.state_dict()
    ours = backbone.state_dict()
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    if not head and name != "whisper":  # the base model's own file loads as a plain state dict too
        load_audio_weights(build_audio_backbone(name, "tiny"), tmp_path / "model.safetensors")


def test_mismatched_weights_are_one_line_errors(tiny, tmp_path):
    _save_pretrained("whisper", tiny["whisper"], tmp_path / "whisper")
    wider = transformers.HubertConfig(**{**tiny["hubert"].config.to_dict(), "hidden_size": 48})
    transformers.HubertModel(wider).save_pretrained(str(tmp_path / "wide_hubert"))
    save_state_dict(tiny["mfcc_cnn"], tmp_path / "mfcc.safetensors")
    cases = [
        (tiny["wav2vec2"], tmp_path / "whisper", "whisper"),
        (tiny["hubert"], tmp_path / "wide_hubert", "hidden_size"),
        (tiny["vggish"], tmp_path / "mfcc.safetensors", "missing keys"),
        (tiny["vggish"], tmp_path / "whisper", "directory"),
        (tiny["conformer"], tmp_path, "no config.json"),
    ]
    for backbone, source, words in cases:
        with pytest.raises(WeightsError, match=words) as info:
            load_audio_weights(backbone, source)
        assert "\n" not in str(info.value)


def test_vggish_keys_follow_torchvggish():
    with torch.device("meta"):
        model = build_audio_backbone("vggish", "full")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    convs = [(0, 1, 64), (3, 64, 128), (6, 128, 256), (8, 256, 256), (11, 256, 512), (13, 512, 512)]
    expected = {f"features.{i}.weight": (o, c, 3, 3) for i, c, o in convs}
    expected |= {f"features.{i}.bias": (o,) for i, _, o in convs}
    for i, (n_in, n_out) in zip((0, 2, 4), ((512 * 24, 4096), (4096, 4096), (4096, 128))):
        expected |= {f"embeddings.{i}.weight": (n_out, n_in), f"embeddings.{i}.bias": (n_out,)}
    assert shapes == expected


# --- ONNX ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(AUDIO_BACKBONES))
def test_onnx_export_matches_torch_at_two_lengths(tiny, tmp_path, name):
    import warnings

    import onnxruntime as ort

    model = tiny[name]
    time_axis = 3 if model.input_kind == "mfcc" else 2
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (_input(model, 10, batch=1),), str(path), dynamo=False, opset_version=17,
                          input_names=["audio"], output_names=["features"],
                          dynamic_axes={"audio": {0: "B", time_axis: "L"}, "features": {0: "B", 2: "T"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for frames in (7, 23):
        audio = _input(model, frames, seed=frames)
        with torch.no_grad():
            expected = model(audio).numpy()
        (got,) = session.run(None, {"audio": audio.numpy()})
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
