"""An output ensemble: trained dense sync models of one architecture run side by side as one model.

Independently trained seeds err on different windows, so averaging their per-frame offset logits (for
every offset decision the same as adding their log-probabilities) decides short windows better than any one
of them (on the real development clips, three seeds of the
shipped recipe: 1-s windows +1.2 points over the mean seed, 2-s +1.6; docs/real_video.md). ``offset_logits``,
``correlation`` and ``sync_prob`` are the members' means; each member's embeddings are unit-normalised,
divided by ``sqrt(N)`` and concatenated, so the ensemble's embedding cosine is the members' mean cosine
(what ``correlation`` holds). Written by ``syncopt ensemble`` (:mod:`syncopt.training.ensemble`); a weights
file whose tensors are named ``members.<i>.*`` loads as one (:func:`syncopt.models.registry.create`).

With ``mirror`` (lip-motion models) every member also reads the mirror image of the lips
(:func:`syncopt.data.lipfeatures.mirror_channels`, a fixed gather of the video channels) and the mirror
views count as members. A face's two halves are not the same to a model trained mostly on one speaker:
on two sets of real development clips, every ensemble tried decided 1-s windows as well or better with
its mirror views (0 to +1.7 points; docs/real_video.md, "Eighth round"). Such a weights file also holds
the gather's ``mirror_index`` and ``mirror_sign``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from syncopt.core.errors import UsageError
from syncopt.core.spec import EMBEDDINGS

_MEMBER = re.compile(r"members\.(\d+)\.")


def members_in(keys: Iterable[str]) -> int:
    """How many ensemble members a state dict's tensor names hold (0: not an ensemble)."""
    found = {int(m.group(1)) for k in keys if (m := _MEMBER.match(k))}
    return max(found) + 1 if found else 0


def mirrored_in(keys: Iterable[str]) -> bool:
    """Whether a state dict is an ensemble with mirror views."""
    return "mirror_index" in set(keys)


class SyncEnsemble(nn.Module):
    """``forward(video, audio)`` of every member (and of its mirror view), combined (see the module docstring)."""

    def __init__(self, members: Sequence[nn.Module], mirror: bool = False) -> None:
        super().__init__()
        if len(members) < (1 if mirror else 2) or len({(m.spec.name, m.spec.preset) for m in members}) != 1:
            raise UsageError("an ensemble needs at least two members of one model and preset (one, with mirror views)")
        self.members = nn.ModuleList(members)
        spec = members[0].spec
        if mirror:
            from syncopt.data.datasets import reads_lips
            from syncopt.data.lipfeatures import mirror_channels

            if not reads_lips(spec):
                raise UsageError(f"mirror views need a model that reads face-mesh lip motion ({spec.name} reads "
                                 f"{spec.preprocessing.video_features})")

            index, sign = mirror_channels()
            self.register_buffer("mirror_index", torch.tensor(index, dtype=torch.long))
            self.register_buffer("mirror_sign", torch.tensor(sign).view(1, -1, 1))
        self.mirror = mirror
        views = len(members) * (2 if mirror else 1)
        wide = tuple(o.model_copy(update={"shape": (o.shape[0], o.shape[1] * views, *o.shape[2:])})
                     if o.name in EMBEDDINGS else o for o in spec.outputs)
        self.spec = spec.model_copy(update={"outputs": wide})

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        videos = [video, video.index_select(1, self.mirror_index) * self.mirror_sign] if self.mirror else [video]
        outs = [member(v, audio) for member in self.members for v in videos]
        scale = len(outs) ** -0.5
        combined = {name: torch.cat([F.normalize(o[name], dim=1, eps=1e-6) * scale for o in outs], dim=1)
                    for name in EMBEDDINGS if name in outs[0]}
        combined |= {name: torch.stack([o[name] for o in outs]).mean(0) for name in outs[0] if name not in combined}
        return {o.name: combined[o.name] for o in self.spec.outputs}
