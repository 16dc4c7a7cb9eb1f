"""Mixed-precision training steps: bf16 autocast on CPU, fp16 autocast with loss scaling on CUDA.

PyTorch's automatic mixed precision (https://pytorch.org/docs/stable/amp.html): CPU autocast
runs in bfloat16, which keeps float32's exponent range and needs no loss scaling; CUDA autocast
runs in float16, whose small range needs a GradScaler so that small gradients do not flush to
zero. Weights and optimiser state stay float32 either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch
from torch import nn


class Precision:
    """Autocast for forwards and the matching backward/step for one device, or plain float32."""

    def __init__(self, device: torch.device, enabled: bool) -> None:
        self.device_type = device.type
        self.enabled = enabled
        self.dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda") if enabled and device.type == "cuda" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for the forward pass and loss."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, params: Iterable[nn.Parameter], max_norm: float) -> None:
        """Clip the (unscaled) gradient norm of ``params`` to ``max_norm`` and take an optimiser step."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(list(params), max_norm)
        if self.scaler is not None:
            self.scaler.step(optimizer)  # skipped when the scaled gradients overflowed
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
