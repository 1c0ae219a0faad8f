"""Production cell inputs: ``loc`` (GeoCLIP), ``sat`` (Sentinel-2 chips via STAC → ecosat), ``env`` (WorldClim
covariates → SINR).

Each is a small picklable dataclass; the encoder (and, for ``sat``, the STAC source and signer) are opened
lazily once per process and reused for every chunk, in the main process and in Dask workers alike.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from geoprom3e.engine.inputs import Gathered

_LOCK = threading.Lock()
_OPEN: dict[tuple, Any] = {}


def _shared(key: tuple, make: Any) -> Any:
    """One object per process and key (encoders, STAC sources)."""
    with _LOCK:
        if key not in _OPEN:
            _OPEN[key] = make()
        return _OPEN[key]


@dataclass
class _EncoderInput:
    modality: str = ""
    """Modality name."""
    weights: str | None = None
    """Hugging Face id or local folder of the encoder (None = the published default, or the offline fallback)."""
    source: str = "taxabind"
    """Encoder registry source."""
    device: str | None = None
    """Torch device (None = CUDA when available)."""
    weights_dir: str | None = None
    """Folder holding local copies of weights (``--weights-dir``)."""
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for :func:`geoprom3e.encoders.get_encoder` (e.g. ``covariates``)."""

    def encoder(self) -> Any:
        """The frozen encoder (opened once per process)."""
        from geoprom3e.encoders import get_encoder

        key = ("enc", self.modality, self.source, self.weights, self.device, self.weights_dir,
               tuple(sorted((k, str(v)) for k, v in self.encoder_kwargs.items())))
        return _shared(key, lambda: get_encoder(self.modality, self.source, self.weights, self.device,
                                                weights_dir=self.weights_dir, **self.encoder_kwargs))

    def _encoder_key(self) -> dict[str, Any]:
        info = self.encoder().info
        return {"encoder": info.source, "weights": info.weights, "in_prom3e_space": info.in_prom3e_space}

    def raw_bytes_per_cell(self) -> int:
        """Bytes of one cell's raw input (its centre's lat, lon as float64), for the gather slots."""
        return 16

    def _encode_items(self, items: Any) -> np.ndarray:
        from geoprom3e.encoders import encode_batches

        return encode_batches(self.encoder(), items, on_error="raise").embeddings


@dataclass
class LocInput(_EncoderInput):
    """Cell centres (lat, lon) through the GeoCLIP location encoder."""

    modality: str = "loc"

    def cache_key(self) -> dict[str, Any]:  # noqa: D102
        return self._encoder_key()

    def gather(self, lat: np.ndarray, lon: np.ndarray) -> Gathered:  # noqa: D102
        return Gathered(np.stack([lat, lon], axis=1).astype(np.float64), np.ones(lat.shape[0], bool),
                        [""] * lat.shape[0])

    def encode(self, raw: np.ndarray) -> np.ndarray:  # noqa: D102
        return self._encode_items(raw)


@dataclass
class EnvInput(LocInput):
    """WorldClim covariates sampled at cell centres through the SINR encoder (``encoder_kwargs['covariates']``);
    like ``loc`` its raw input is the cell centres, which the encoder samples the rasters at."""

    modality: str = "env"

    def cache_key(self) -> dict[str, Any]:  # noqa: D102
        return {**self._encoder_key(), "covariates": str(self.encoder_kwargs.get("covariates"))}


@dataclass
class SatInput(_EncoderInput):
    """A Sentinel-2 chip per cell (one STAC search per chunk, threaded window reads) through the sat encoder."""

    remote_gather: ClassVar[bool] = True
    """Gathering reads over the network and decodes chips: worth worker processes (``--gather-workers``)."""

    modality: str = "sat"
    request: Any = None
    """:class:`geoprom3e.imagery.ImageryRequest` (default: Planetary Computer, RGB, 2020 growing season)."""
    threads: int = 16
    """Concurrent chip reads per process."""
    settings: Any = None
    """:class:`geoprom3e.imagery.ReadSettings` for chip reads (retries, timeouts; None: the defaults)."""

    def _request(self) -> Any:
        from geoprom3e.imagery import ImageryRequest

        return self.request if self.request is not None else ImageryRequest()

    def raw_bytes_per_cell(self) -> int:
        """Bytes of one cell's chip (bands x size x size)."""
        req = self._request()
        return len(req.band_names) * req.chip_size ** 2 * np.dtype(req.dtype).itemsize

    def cache_key(self) -> dict[str, Any]:  # noqa: D102
        req = dataclasses.asdict(self._request())
        for k in ("signing", "page_limit", "allow_hosts", "allow_local_dirs"):  # they never change pixels
            req.pop(k, None)
        return {**self._encoder_key(), "imagery": req}

    def _source(self) -> tuple[Any, Any, Any]:
        from concurrent.futures import ThreadPoolExecutor

        from geoprom3e.imagery import Signer, open_source

        req = self._request()
        key = ("sat-source", repr(req), self.threads)
        return _shared(key, lambda: (open_source(req), Signer(req.signing),
                                     ThreadPoolExecutor(self.threads, thread_name_prefix="geoprom3e-chip")))

    def gather(self, lat: np.ndarray, lon: np.ndarray) -> Gathered:  # noqa: D102
        from geoprom3e.imagery import DONE, STATUS_NAMES, fetch_chip_block

        source, signer, pool = self._source()
        block = fetch_chip_block(self._request(), lat, lon, source=source, signer=signer, executor=pool,
                                 threads=self.threads, settings=self.settings)
        ok = block.status == DONE
        # reasons start with their kind ("transient:", "corrupt:", "no_scene:", ...): geoprom3e.imagery.is_transient
        reasons = [
            "" if ok[i] else (block.reason[i] or STATUS_NAMES[int(block.status[i])]) for i in range(lat.shape[0])
        ]
        n = max(lat.shape[0], 1)
        # the chunk's HTTP requests for COG bytes, spread over its cells: sum() / chips done = requests per chip
        requests = np.full(lat.shape[0], block.stats.get("requests", 0) / n, np.float32)
        return Gathered(block.chips[ok], ok, reasons,
                        {"item_id": np.array(block.item_id), "cloud_fraction": block.cloud_fraction,
                         "requests": requests})

    def encode(self, raw: np.ndarray) -> np.ndarray:  # noqa: D102
        return self._encode_items(raw)


def make_input(modality: str, **kwargs: Any) -> Any:
    """The production input for ``modality`` (``loc``, ``sat`` or ``env``)."""
    from geoprom3e.errors import ConfigError

    classes = {"loc": LocInput, "sat": SatInput, "env": EnvInput}
    if modality not in classes:
        raise ConfigError(f"the grid engine embeds {', '.join(classes)}; {modality!r} is not one of them")
    return classes[modality](**kwargs)
