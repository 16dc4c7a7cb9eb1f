"""TensorRT engines on CUDA (TensorRT 10 API), buffers held as PyTorch CUDA tensors."""

from __future__ import annotations

import numpy as np
import torch

from syncopt.core.artifact import Artifact
from syncopt.core.errors import InputSpecError
from syncopt.export.tensorrt import require_tensorrt
from syncopt.runtimes import Session


class TensorRTSession(Session):
    name = "tensorrt"

    def __init__(self, artifact: Artifact, threads: int | None = None) -> None:
        trt = require_tensorrt("The TensorRT runtime")
        super().__init__(artifact.spec)
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(artifact.path.read_bytes())
        self.context = self.engine.create_execution_context()

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keep = {}
        for name, x in feeds.items():
            lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
            if any(not a <= s <= b for a, s, b in zip(lo, x.shape, hi)):
                raise InputSpecError(f"{self.spec.name}: input '{name}' shape {x.shape} is outside the engine's "
                                     f"profile {tuple(lo)}..{tuple(hi)}")
            keep[name] = torch.from_numpy(x).cuda().contiguous()
            self.context.set_input_shape(name, tuple(x.shape))
            self.context.set_tensor_address(name, keep[name].data_ptr())
        outputs = {}
        for name in self.spec.output_names:
            outputs[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return {name: t.cpu().numpy() for name, t in outputs.items()}
