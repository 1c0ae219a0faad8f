"""Encode inputs named on the command line into an ``.npz`` file (what ``geoprom3e encode`` calls)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoprom3e.encoders.batching import EncodeResult, ProgressFn, encode_batches
from geoprom3e.encoders.registry import encoder_spec, get_encoder
from geoprom3e.errors import InputError, OutputError
from geoprom3e.io.atomic import atomic_path

_LAT = ("lat", "latitude", "decimallatitude", "y")
_LON = ("lon", "lng", "long", "longitude", "decimallongitude", "x")


def read_points(path: str | Path) -> np.ndarray:
    """(lat, lon) rows from a CSV with latitude/longitude columns (any common name) → [N, 2]."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"points file {str(path)!r} cannot be read ({str(exc)[:100]}): pass a CSV") from None
    cols = {c.lower().strip(): c for c in df.columns}
    lat = next((cols[c] for c in _LAT if c in cols), None)
    lon = next((cols[c] for c in _LON if c in cols), None)
    if lat is None or lon is None:
        raise InputError(
            f"points file {str(path)!r} has columns {list(df.columns)[:8]}: it needs a latitude column "
            f"({'/'.join(_LAT[:2])}) and a longitude column ({'/'.join(_LON[:4])})"
        )
    return df[[lat, lon]].to_numpy(dtype=np.float64)


def _inputs_for(modality: str, inputs: list[str]) -> Any:
    if modality in ("loc", "env"):
        if len(inputs) == 1 and Path(inputs[0]).is_file():
            return read_points(inputs[0])
        try:
            return np.array([[float(v) for v in s.split(",")] for s in inputs], dtype=np.float64)
        except ValueError:
            raise InputError(
                f"locations {inputs[:3]} are neither a CSV file nor 'LAT,LON' pairs: pass e.g. 38.9,-77.0"
            ) from None
    if modality == "text":
        if len(inputs) == 1 and inputs[0].startswith("@"):
            return [ln.strip() for ln in Path(inputs[0][1:]).read_text().splitlines() if ln.strip()]
        return list(inputs)
    return list(inputs)


@dataclass(frozen=True)
class EncodeSummary:
    """What :func:`encode_to_file` wrote."""

    path: Path
    """The ``.npz`` written (``embeddings`` [N, 512], ``failed_index``, ``failed_reason``, ``meta``)."""
    n: int
    """Number of inputs."""
    failed: tuple[tuple[int, str], ...]
    """(index, reason) of inputs that could not be encoded (their rows are NaN)."""
    seconds: float
    """Wall time of the encoding."""
    note: str
    """The encoder's note (e.g. weights not in the ProM3E space)."""


def encode_to_file(
    modality: str, inputs: list[str], out: str | Path, *, source: str = "taxabind", weights: str | None = None,
    weights_dir: str | None = None, device: str | None = None, batch_size: int | None = None, num_workers: int = 0,
    covariates: str | None = None, overwrite: bool = False, progress: ProgressFn | None = None,
) -> EncodeSummary:
    """Build the encoder, embed ``inputs`` (files, strings, a points CSV or 'LAT,LON' pairs), write ``out``."""
    spec = encoder_spec(modality, source)
    out = Path(out)
    if out.suffix != ".npz":
        raise OutputError(f"output {str(out)!r} must end in .npz")
    if out.exists() and not overwrite:
        raise OutputError(f"output {str(out)!r} exists: pass --overwrite or choose another --out")
    if not inputs:
        raise InputError("no inputs given: name files, strings or a points CSV")
    kw: dict[str, Any] = {"covariates": covariates} if spec.modality == "env" else {}
    enc = get_encoder(spec.modality, source, weights, device, weights_dir=weights_dir, **kw)
    items = _inputs_for(spec.modality, inputs)
    t0 = time.perf_counter()
    res: EncodeResult = encode_batches(enc, items, batch_size=batch_size, num_workers=num_workers, progress=progress)
    dt = time.perf_counter() - t0
    if res.failed and len(res.failed) == len(items):
        raise InputError(f"none of the {len(items)} input(s) could be encoded; first: {res.failed[0][1]}")
    meta = {"modality": spec.modality, "source": enc.info.source, "weights": enc.info.weights,
            "in_prom3e_space": enc.info.in_prom3e_space, "note": enc.info.note, "device": str(enc.device),
            "n": len(items), "seconds": dt}
    labels = [str(x) for x in items] if spec.modality not in ("loc", "env") else []
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, embeddings=res.embeddings, failed_index=np.array([i for i, _ in res.failed], dtype=np.int64),
                     failed_reason=np.array([m for _, m in res.failed], dtype=str), inputs=np.array(labels, dtype=str),
                     meta=np.array(json.dumps(meta)))
    return EncodeSummary(out, len(items), res.failed, dt, enc.info.note)
