"""syncnet_v2: published key layout, strict loading, dense == windowed, the offset procedure."""

from __future__ import annotations

import pytest
import torch

import syncopt
from syncopt.models.complexity import count_params
from syncopt.core.errors import InputFileError, WeightsError
from syncopt.models.syncnet import pairwise_distances, windowed_embeddings, windowed_offset

# The published syncnet_v2.model layout (joonson/syncnet_python SyncNetModel.py): Sequential
# indices of the conv/BN/linear layers and their weight shapes. The file predates
# BatchNorm's num_batches_tracked buffer, so it is absent here too.
_AUD = {0: (64, 1, 3, 3), 4: (192, 64, 3, 3), 8: (384, 192, 3, 3), 11: (256, 384, 3, 3),
        14: (256, 256, 3, 3), 18: (512, 256, 5, 4)}
_LIP = {0: (96, 3, 5, 7, 7), 4: (256, 96, 1, 5, 5), 8: (256, 256, 1, 3, 3), 11: (256, 256, 1, 3, 3),
        14: (256, 256, 1, 3, 3), 18: (512, 256, 1, 6, 6)}


def published_state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    state: dict[str, torch.Tensor] = {}
    for tower, convs in (("netcnnaud", _AUD), ("netcnnlip", _LIP)):
        for i, shape in convs.items():
            state[f"{tower}.{i}.weight"] = torch.randn(shape, generator=g) * 0.05
            state[f"{tower}.{i}.bias"] = torch.randn(shape[0], generator=g) * 0.05
            bn, c = f"{tower}.{i + 1}", shape[0]
            state[f"{bn}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
            state[f"{bn}.bias"] = 0.1 * torch.randn(c, generator=g)
            state[f"{bn}.running_mean"] = 0.1 * torch.randn(c, generator=g)
            state[f"{bn}.running_var"] = 1 + 0.1 * torch.rand(c, generator=g)
    for head in ("netfcaud", "netfclip"):
        state[f"{head}.0.weight"] = torch.randn(512, 512, generator=g) * 0.05
        state[f"{head}.0.bias"] = torch.zeros(512)
        state[f"{head}.1.weight"] = torch.ones(512)
        state[f"{head}.1.bias"] = torch.zeros(512)
        state[f"{head}.1.running_mean"] = torch.zeros(512)
        state[f"{head}.1.running_var"] = torch.ones(512)
        state[f"{head}.3.weight"] = torch.randn(1024, 512, generator=g) * 0.05
        state[f"{head}.3.bias"] = torch.zeros(1024)
    return state


def test_published_layout_loads_strictly(tmp_path):
    state = published_state_dict()
    path = tmp_path / "syncnet_v2.model"
    torch.save(state, path)
    model = syncopt.create("syncnet_v2", weights=path)
    own = model.state_dict()
    assert set(own) - set(state) == {k for k in own if k.endswith("num_batches_tracked")}
    for k, v in state.items():
        assert torch.equal(own[k], v), k


def test_full_size_parameter_count_equals_published_layout():
    published = sum(v.numel() for k, v in published_state_dict().items() if "running_" not in k)
    with torch.device("meta"):
        model = syncopt.create("syncnet_v2", "full")
    assert count_params(model) == published == 13_631_616


def test_wrong_file_names_missing_and_unexpected_keys(tmp_path):
    state = published_state_dict()
    del state["netfcaud.3.weight"]
    state["classifier.weight"] = torch.zeros(3)
    path = tmp_path / "other.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError) as err:
        syncopt.create("syncnet_v2", weights=path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "1 missing keys (netfcaud.3.weight)" in msg and "1 unexpected keys (classifier.weight)" in msg


def test_tiny_weights_do_not_fit_full_model(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(syncopt.create("syncnet_v2", "tiny").state_dict(), path)
    with pytest.raises(WeightsError, match=r"shape mismatches \(netcnnaud\.0\.weight: file \(8, 1, 3, 3\) vs model \(64, 1, 3, 3\)"):
        syncopt.create("syncnet_v2", weights=path)


def test_truncated_and_missing_weights(tmp_path):
    path = tmp_path / "syncnet_v2.model"
    torch.save(published_state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        syncopt.create("syncnet_v2", weights=path)
    with pytest.raises(InputFileError, match="not found"):
        syncopt.create("syncnet_v2", weights=tmp_path / "absent.model")


class _Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_malicious_pickle_is_refused_without_executing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.model"
    torch.save({"netcnnaud.0.weight": _Boom()}, path)
    with pytest.raises(WeightsError, match="refusing to load evil.model"):
        syncopt.create("syncnet_v2", "tiny", weights=path)
    assert not (tmp_path / "PWNED").exists()


def test_dense_forward_equals_published_windowed_loop():
    model = syncopt.create("syncnet_v2", "tiny")
    feeds = model.spec.example_inputs(T=12, seed=3)
    out = model(**feeds)
    assert out["video_emb"].shape == (1, 128, 8) and out["audio_emb"].shape == (1, 128, 8)
    v, a = windowed_embeddings(model, feeds["video"], feeds["audio"], batch_size=3)
    # the published loop stops one window short of the last one (7 of 8 windows)
    assert v.shape == (7, 128)
    torch.testing.assert_close(out["video_emb"][0, :, :7].T, v, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["audio_emb"][0, :, :7].T, a, atol=1e-4, rtol=1e-4)


def _reference_pdist(feat1, feat2, vshift):
    """calc_pdist as published: a Python loop over frames with F.pairwise_distance."""
    win = vshift * 2 + 1
    feat2p = torch.nn.functional.pad(feat2, (0, 0, vshift, vshift))
    return torch.stack([
        torch.nn.functional.pairwise_distance(feat1[[i], :].repeat(win, 1), feat2p[i:i + win, :])
        for i in range(len(feat1))
    ])


def test_pairwise_distances_match_published_loop():
    v, a = torch.randn(30, 16), torch.randn(30, 16)
    torch.testing.assert_close(pairwise_distances(v, a, 7), _reference_pdist(v, a, 7))


@pytest.mark.parametrize("k", [-6, -1, 0, 3, 9])
def test_windowed_offset_recovers_known_shift(k):
    n, vshift = 80, 15
    base = torch.randn(n + 40, 64)
    video = base[20:20 + n]
    audio = base[20 + k:20 + k + n]  # audio[t] = video[t + k]: video t matches audio t - k
    result = windowed_offset(video, audio, vshift)
    assert result.offset == k
    median = result.min_dist + result.confidence
    # identical embeddings at the true shift: only the |k| edge frames (zero-padded partners) add distance
    assert result.min_dist < 0.25 * median
    assert result.confidence > 5
    assert min(range(2 * vshift + 1), key=result.offset_scores.__getitem__) - vshift == k  # scores run -K..K
    assert len(result.per_frame_confidence) == n
    inner = result.per_frame_offset[abs(k):n - abs(k)]
    assert all(o == k for o in inner)
