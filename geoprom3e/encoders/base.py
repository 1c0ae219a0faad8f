"""The interface every frozen modality encoder shares, and the runtime choices (device, autocast) they use."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from geoprom3e.errors import ConfigError, EncoderError
from geoprom3e.modalities import EMBED_DIM

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderInfo:
    """What an encoder is and where its weights came from (reported by ``geoprom3e weights list``/manifests)."""

    modality: str
    """ProM3E modality the embeddings feed (``image``, ``sat``, ``loc``, ``env``, ``text``, ``audio``)."""
    source: str
    """Registry source name (``taxabind``, ``geoclip``, ``hf-clip``)."""
    weights: str
    """Where the weights were loaded from: a Hugging Face id, a folder or a file."""
    in_prom3e_space: bool
    """False when the weights are real but were not the ones ProM3E was trained on (say so in outputs)."""
    note: str = ""
    """One line for users, e.g. why the embeddings are not in the ProM3E space."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` → CUDA when available, else CPU; a named CUDA device that is absent falls back to CPU with a warning."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not a torch device: use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        log.warning("device %s asked for but CUDA is not available: falling back to CPU", device)
        return torch.device("cpu")
    return dev


class FrozenEncoder:
    """Base class: a frozen ``torch.nn.Module`` plus its input preprocessing.

    Subclasses implement :meth:`preprocess` (raw input → batch tensor or dict of tensors, on the CPU, runnable in
    a worker process) and :meth:`_forward` (batch on the device → [B, 512] raw embeddings). :meth:`encode`
    adds ``torch.inference_mode``, the device move (pinned, non-blocking), bf16 autocast on a GPU, and the
    L2 normalisation to float32.
    """

    modality: str = ""
    """ProM3E modality name."""

    def __init__(
        self,
        module: torch.nn.Module,
        info: EncoderInfo,
        *,
        device: str | torch.device | None = None,
        amp: bool | None = None,
        compile: bool = False,
        channels_last: bool = False,
        batch_size_cpu: int = 32,
        batch_size_gpu: int = 256,
    ) -> None:
        self.info = info
        self.device = resolve_device(device)
        # bf16 autocast only on a GPU: on CPUs without AVX512-BF16 it is ~8x slower (DESIGN §4).
        self.amp = (self.device.type == "cuda") if amp is None else bool(amp)
        module = module.eval().requires_grad_(False).to(self.device)
        if channels_last and self.device.type == "cuda":
            module = module.to(memory_format=torch.channels_last)
        self.channels_last = channels_last and self.device.type == "cuda"
        self.module = module
        self._compiled: Any = torch.compile(module) if compile else None
        self._batch_sizes = (batch_size_cpu, batch_size_gpu)

    # --- properties -------------------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype: bfloat16 under autocast on a GPU, else float32 (outputs are always float32)."""
        return torch.bfloat16 if self.amp else torch.float32

    @property
    def preferred_batch_size(self) -> int:
        """A batch size that keeps this device busy without running out of memory."""
        return self._batch_sizes[1] if self.device.type == "cuda" else self._batch_sizes[0]

    @property
    def net(self) -> Any:
        """The module to call (compiled when asked)."""
        return self._compiled if self._compiled is not None else self.module

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(modality={self.modality!r}, source={self.info.source!r}, "
            f"weights={self.info.weights!r}, device={str(self.device)!r}, dtype={self.dtype})"
        )

    # --- to implement -----------------------------------------------------------------------------------------
    preprocessor: Any = None
    """Picklable object with ``batch(items)`` (and ``__call__(item)``); runs in DataLoader workers."""

    def items(self, raw: Any) -> Any:
        """Split ``raw`` into the item sequence :meth:`preprocess` batches (one item → a list of one)."""
        if isinstance(raw, (list, tuple)):
            return list(raw)
        return [raw]

    def preprocess(self, raw: Any) -> Any:
        """Turn raw inputs (paths, arrays, strings; one or a list) into a CPU batch for :meth:`encode`."""
        return self.preprocessor.batch(self.items(raw))

    def _forward(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------------------------------------
    def normalize_input(self, x: Any) -> Any:
        """uint8 image batches from the preprocessors → normalised float32 (on the device); others unchanged."""
        transform = getattr(self.preprocessor, "transform", None)
        if isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and hasattr(transform, "normalize"):
            x = transform.normalize(x)
            if self.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
        return x

    def to_device(self, batch: Any) -> Any:
        """Move a tensor (or a dict of tensors) to the encoder's device; pinned + non-blocking on a GPU."""
        if isinstance(batch, dict):
            return {k: self.to_device(v) for k, v in batch.items()}
        if not isinstance(batch, torch.Tensor):
            return batch
        if self.device.type == "cuda":
            if not batch.is_pinned() and batch.device.type == "cpu":
                batch = batch.pin_memory()
            batch = batch.to(self.device, non_blocking=True)
            if self.channels_last and batch.ndim == 4:
                batch = batch.contiguous(memory_format=torch.channels_last)
            return batch
        return batch.to(self.device)

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if self.amp:
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                yield
        else:
            yield

    def encode(self, batch: Any) -> torch.Tensor:
        """Embed a preprocessed batch: [B, 512] float32, L2-normalised, on the CPU."""
        with torch.inference_mode():
            x = self.normalize_input(self.to_device(batch))
            with self._autocast():
                out = self._forward(x)
            out = torch.nn.functional.normalize(out.float(), dim=-1)
        if out.ndim != 2 or out.shape[1] != EMBED_DIM:
            raise EncoderError(
                f"{self.modality} encoder produced shape {tuple(out.shape)}, not [B, {EMBED_DIM}]: "
                "the weights are not a TaxaBind-compatible 512-d encoder"
            )
        return out.cpu()

    def embed(self, raw: Any) -> torch.Tensor:
        """``encode(preprocess(raw))`` in one call (for small inputs; use :func:`encode_batches` for many)."""
        return self.encode(self.preprocess(raw))
