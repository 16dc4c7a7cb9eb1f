"""``openvino``: NNCF post-training INT8 of the OpenVINO IR (:mod:`syncopt.export.openvino_int8`), fp32 IR beside it."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from syncopt.compress.quantize import QuantizeConfig, Quantized
from syncopt.data.datasets import EVAL_SHIFTS, ClipDataset, shifted_items, synth_dataset
from syncopt.export.openvino_int8 import CHECK_CLIPS


def quantize_openvino(model: nn.Module, calib: ClipDataset, evaluation: ClipDataset, config: QuantizeConfig,
                      out: Path) -> Quantized:
    """The fp32 IR (the speed and accuracy reference) and the NNCF INT8 IR calibrated on ``calib``.

    ``config``: a :class:`~syncopt.compress.quantize.QuantizeConfig`; its ``max_drop`` (points), when
    set, turns on accuracy control on ``eval_clips // 2`` synthetic ``val`` clips (never the test clips),
    else its ``min_cosine`` drives the cosine check on ``val`` clips of ``config.frames`` frames. With
    real evaluation clips (``--eval-data``: ``evaluation``), both run on them, as the ``ort`` method's
    ``--fallback auto`` does (so give development clips there, not test clips); with real calibration clips
    and synthetic evaluation, on the first calibration clips at audio shifts (lip models read no synthetic
    clips).
    Checking on the calibration clips alone passed INT8 lip students whose embedding cosine on other
    real clips was 0.894-0.986.
    """
    from syncopt.export import export

    fp32 = export(model, "openvino", out, "fp32")
    if config.eval_data != "synth":
        validation = evaluation
    elif config.calibration_data != "synth":
        validation = shifted_items(ClipDataset(calib.items[:CHECK_CLIPS], calib.pre), EVAL_SHIFTS,
                                   model.spec.max_offset)
    else:
        clips = max(config.eval_clips // 2, 8) if config.max_drop is not None else CHECK_CLIPS
        validation = synth_dataset(model.spec, "val", clips, config.frames)
    int8 = export(model, "openvino", out, "int8", calibration=calib, validation=validation, max_drop=config.max_drop,
                  min_cosine=config.min_cosine)
    return Quantized(int8, fp32)
