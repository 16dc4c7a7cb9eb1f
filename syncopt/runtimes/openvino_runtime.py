"""OpenVINO on CPU (or ``$SYNCOPT_OPENVINO_DEVICE``: GPU, NPU where present), latency hint, threads settable.

The inference precision follows the artifact's: ``INFERENCE_PRECISION_HINT`` f32 for fp32 and
int8 artifacts (the float parts of INT8 stay f32), bf16 for bf16 ones. The CPU plugin's own
default is bf16 on CPUs with AVX-512 BF16 or AMX, so the hint is always set. The IR keeps the
dynamic batch and time axes of the ONNX export, so any batch and T run; the session compiles the
IR for each set of input shapes it is fed (reshaped static, the last :data:`SHAPES_KEPT` kept):
static shapes ran full x3d_s at 250 frames 1.08x (f32), 1.11x (bf16) and 1.16x (NNCF INT8) as fast
as the dynamic IR, for a compile of 2-4 s per new shape at that size (docs/export.md, "OpenVINO").
"""

from __future__ import annotations

import os

import numpy as np

from syncopt.core.artifact import Artifact
from syncopt.core.errors import BackendUnavailable, WeightsError
from syncopt.export import require
from syncopt.export.openvino import XML
from syncopt.runtimes import Session

HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
DEVICE_VARIABLE = "SYNCOPT_OPENVINO_DEVICE"
SHAPES_KEPT = 4  # compiled shapes held (a streaming step or a benchmark feeds one)


class OpenVINOSession(Session):
    name = "openvino"

    def __init__(self, artifact: Artifact, threads: int | None = None) -> None:
        ov = require("openvino", "openvino", "The OpenVINO runtime")
        super().__init__(artifact.spec)
        core = ov.Core()
        device = os.environ.get(DEVICE_VARIABLE, "CPU")
        if device.split(".")[0] not in core.available_devices:
            raise BackendUnavailable(f"OpenVINO device {device} is not present here (present: "
                                     f"{', '.join(core.available_devices)})")
        try:
            graph = core.read_model(str(artifact.path / XML))
        except RuntimeError as exc:
            raise WeightsError(f"{artifact.path.name} is not a readable OpenVINO IR "
                               f"({' '.join(str(exc).split())[:200]})") from exc
        self.core, self.graph, self.device = core, graph, device
        self.config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": HINTS[artifact.precision]}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.compiled: dict[tuple, tuple] = {}  # input shapes -> (infer request, output ports), oldest first

    def _request(self, feeds: dict[str, np.ndarray]) -> tuple:
        key = tuple((name, feeds[name].shape) for name in self.spec.input_names if name in feeds)
        if key not in self.compiled:
            graph = self.graph.clone()
            graph.reshape({name: list(shape) for name, shape in key})
            compiled = self.core.compile_model(graph, self.device, self.config)
            self.compiled[key] = (compiled.create_infer_request(), [compiled.output(n) for n in self.spec.output_names])
            while len(self.compiled) > SHAPES_KEPT:
                del self.compiled[next(iter(self.compiled))]
        return self.compiled[key]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request, outputs = self._request(feeds)
        result = request.infer(feeds, share_inputs=True, share_outputs=True)  # no copy in; one copy out (below)
        return {name: np.array(result[port]) for name, port in zip(self.spec.output_names, outputs)}
