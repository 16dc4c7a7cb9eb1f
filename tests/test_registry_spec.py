"""Every registered model builds, runs its spec's example input and matches its spec."""

from __future__ import annotations

import pytest
import torch

import syncopt
from syncopt.models.complexity import count_macs
from syncopt.core.errors import ClipTooShortError, InputSpecError, UsageError
from syncopt.core.spec import parse_dim, resolve_dim

NAMES = syncopt.model_names()


def test_foundation_models_are_registered():
    assert {"syncnet_v2", "fcn", "fcn_attn"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("frames", [None, 9])
def test_tiny_model_matches_its_spec(name, frames):
    model = syncopt.create(name, "tiny")
    spec = model.spec
    assert spec.name == name and spec.preset == "tiny"
    feeds = spec.example_inputs(T=frames, batch=2)
    assert list(feeds) == spec.input_names
    sizes = spec.validate_inputs(feeds)
    with torch.no_grad():
        out = model(**feeds)
    assert list(out) == spec.output_names
    for t in spec.outputs:
        assert tuple(out[t.name].shape) == t.concrete_shape(sizes), t.name
        assert str(out[t.name].dtype) == f"torch.{t.dtype}"
        assert torch.isfinite(out[t.name]).all()


@pytest.mark.parametrize("name", NAMES)
def test_full_model_matches_its_spec_on_meta(name):
    with torch.device("meta"):
        model = syncopt.create(name, "full")
    frames = max(7, model.spec.min_frames)
    feeds = {k: v.to("meta") for k, v in model.spec.example_inputs(T=frames).items()}
    out = model(**feeds)
    sizes = model.spec.sizes(frames)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        t.name: t.concrete_shape(sizes) for t in model.spec.outputs
    }


def test_macs_are_counted_and_grow_with_clip_length():
    model = syncopt.create("fcn", "tiny")
    m10, m20 = count_macs(model, model.spec, frames=10), count_macs(model, model.spec, frames=20)
    assert 0 < m10 < m20
    assert abs(m20 / m10 - 2.0) < 0.05  # dense model: cost is linear in T


def test_unknown_names_are_usage_errors():
    with pytest.raises(UsageError, match=r"unknown model 'fcn_atn' \(did you mean fcn_attn"):
        syncopt.create("fcn_atn")
    with pytest.raises(UsageError, match="has no preset 'huge'"):
        syncopt.create("fcn", "huge")


def test_dim_expressions():
    assert parse_dim("4*T") == (4, "T", 0)
    assert parse_dim("T-4") == (1, "T", -4)
    assert resolve_dim("4*T+2", {"T": 10}) == 42
    assert resolve_dim(13, {}) == 13
    with pytest.raises(ValueError):
        parse_dim("T**2")


def test_dynamic_axes_name_the_symbolic_dims():
    spec = syncopt.create("fcn", "tiny").spec
    axes = spec.dynamic_axes()
    assert axes["video"] == {0: "B", 2: "T"}
    assert axes["audio"] == {0: "B", 3: "4*T"}
    assert axes["sync_prob"] == {0: "B", 1: "T"}


@pytest.fixture(scope="module")
def fcn_spec():
    return syncopt.create("fcn", "tiny").spec


def test_validate_rejects_wrong_names(fcn_spec):
    feeds = fcn_spec.example_inputs(T=10)
    feeds["mfcc"] = feeds.pop("audio")
    with pytest.raises(InputSpecError, match=r"inputs \['mfcc', 'video'\] do not match"):
        fcn_spec.validate_inputs(feeds)


def test_validate_rejects_wrong_shape(fcn_spec):
    feeds = fcn_spec.example_inputs(T=10)
    feeds["audio"] = feeds["audio"][..., :-3]  # 37 MFCC steps for 10 frames
    with pytest.raises(InputSpecError, match=r"input 'audio' has shape \(1, 1, 13, 37\)"):
        fcn_spec.validate_inputs(feeds)
    feeds = fcn_spec.example_inputs(T=10)
    feeds["video"] = feeds["video"][:, :, :, :32]
    with pytest.raises(InputSpecError, match="input 'video' has shape"):
        fcn_spec.validate_inputs(feeds)


def test_validate_rejects_nan_and_dtype(fcn_spec):
    feeds = fcn_spec.example_inputs(T=10)
    feeds["video"][0, 0, 3, 1, 1] = float("nan")
    with pytest.raises(InputSpecError, match="'video' contains NaN or Inf"):
        fcn_spec.validate_inputs(feeds)
    feeds = fcn_spec.example_inputs(T=10)
    feeds["audio"] = feeds["audio"].double()
    with pytest.raises(InputSpecError, match="dtype torch.float64, expected float32"):
        fcn_spec.validate_inputs(feeds)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_finiteness_by_sum_is_exact(fcn_spec, value):
    """The finiteness test sums the input: values whose sum overflows are still finite, and one Inf among
    huge values of the other sign (a sum of NaN or of Inf either way) is still caught."""
    feeds = fcn_spec.example_inputs(T=10)
    feeds["video"][0, 0, :2] = 3e38  # the float32 sum overflows to Inf
    assert fcn_spec.validate_inputs(feeds)["T"] == 10
    feeds["video"][0, 0, 2, 0, 0] = value
    with pytest.raises(InputSpecError, match="'video' contains NaN or Inf"):
        fcn_spec.validate_inputs(feeds)


def test_too_short_clip(fcn_spec):
    with pytest.raises(ClipTooShortError, match="clip of 3 frames is shorter than .* 5 frames"):
        fcn_spec.example_inputs(T=3)
