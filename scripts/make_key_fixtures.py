"""Write the state-dict key-and-shape fixtures of the video backbones from the REAL reference code.

The fixtures (``tests/fixtures/keys/<name>.json``, ``{key: shape}``) let the test suite prove
that syncopt's backbones load the reference libraries' checkpoints strictly, without installing
those libraries beside syncopt. Run this once, in a throwaway venv OUTSIDE the repo::

    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 pytorchvideo  # 0.1.5 from PyPI
    # pytorch-i3d is not packaged: take pytorch_i3d.py from github.com/piergiaj/pytorch-i3d
    # (fixtures were made at commit 05783d1)
    /tmp/refvenv/bin/python scripts/make_key_fixtures.py --i3d-source /path/to/pytorch_i3d.py

Sources, by fixture:
- ``r3d_18``, ``r2plus1d_18``: ``torchvision.models.video.r3d_18`` / ``r2plus1d_18``.
- ``r3d_34``, ``r3d_50``: torchvision's ``VideoResNet`` class with the ResNet-34/50 stage
  depths (3, 4, 6, 3) and BasicBlock/Bottleneck (torchvision ships only the 18-layer builder).
- ``x3d_xs``, ``x3d_s``, ``x3d_m``, ``x3d_l``, ``slowfast_r50``: ``pytorchvideo.models.hub``.
- ``i3d``: ``InceptionI3d(num_classes=400)`` of piergiaj/pytorch-i3d.

TimeSformer needs no fixture: its layout is transformers' ``TimesformerForVideoClassification``,
which the tests build directly.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "keys"


def _torchvision_builders() -> dict[str, Callable[[], nn.Module]]:
    from torchvision.models import video as tvv
    from torchvision.models.video.resnet import BasicBlock, BasicStem, Bottleneck, Conv3DSimple, VideoResNet

    def r3d(block: type[nn.Module]) -> Callable[[], nn.Module]:
        return lambda: VideoResNet(block, [Conv3DSimple] * 4, [3, 4, 6, 3], BasicStem)

    return {
        "r3d_18": tvv.r3d_18,
        "r3d_34": r3d(BasicBlock),
        "r3d_50": r3d(Bottleneck),
        "r2plus1d_18": tvv.r2plus1d_18,
    }


def _pytorchvideo_builders() -> dict[str, Callable[[], nn.Module]]:
    from pytorchvideo.models import hub

    return {name: getattr(hub, name) for name in ("x3d_xs", "x3d_s", "x3d_m", "x3d_l", "slowfast_r50")}


def _i3d_builder(source: Path) -> dict[str, Callable[[], nn.Module]]:
    spec = importlib.util.spec_from_file_location("pytorch_i3d", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {"i3d": lambda: module.InceptionI3d(num_classes=400, in_channels=3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--i3d-source", type=Path, required=True, help="path to pytorch-i3d's pytorch_i3d.py")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    builders = {**_torchvision_builders(), **_pytorchvideo_builders(), **_i3d_builder(args.i3d_source)}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, build in builders.items():
        with torch.device("meta"):
            state = build().state_dict()
        shapes = {key: list(value.shape) for key, value in state.items()}
        (args.out / f"{name}.json").write_text(json.dumps(shapes, indent=0) + "\n")
        print(f"{name}: {len(shapes)} keys, {sum(v.numel() for v in state.values()):,} numbers")


if __name__ == "__main__":
    main()
