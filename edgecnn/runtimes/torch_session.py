"""A PyTorch module behind the :class:`Session` interface (the host-side reference).

For comparing an exported artifact with the float or fake-quant graph it came from.
torch is imported when a session is made, never by ``import edgecnn.runtimes``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from edgecnn.runtimes.base import Session


class TorchSession(Session):
    """Run ``module`` (an ``nn.Module`` or exported graph module) on CPU float32 batches.

    ``input_shape`` (optional, batch dimension may be None) enables the input shape
    check; ``batch`` fixes the batch size (chunks and padding as other sessions).
    """

    runtime = "torch"

    def __init__(
        self,
        module: Any,
        layout: str = "NCHW",
        *,
        input_shape=None,
        batch: int | None = None,
        threads: int | None = None,
    ):
        import torch

        self._torch = torch
        self._module = module
        # torch.export graph modules refuse .eval(): the caller puts them in eval mode
        # (torchao's move_exported_model_to_eval) before handing them over.
        with contextlib.suppress(AttributeError, NotImplementedError):
            module.eval()
        if threads:
            torch.set_num_threads(int(threads))
        shape = list(input_shape) if input_shape is not None else [batch]
        if input_shape is not None and batch is not None:
            shape[0] = batch
        super().__init__(shape, layout=layout, info={"version": torch.__version__, "threads": threads})
        self._check_shape = input_shape is not None

    def _check_input(self, x: np.ndarray) -> None:
        if self._check_shape:
            super()._check_input(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        with self._torch.no_grad():
            y = self._module(self._torch.from_numpy(x))
        if isinstance(y, (tuple, list)):
            y = y[0]
        return y.detach().float().cpu().numpy()

    def _close(self) -> None:
        self._module = None
