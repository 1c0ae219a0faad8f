"""Run manifests: inputs with checksums, counts kept and dropped, versions, timings, outputs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from geoprom3e._version import __version__


def sha256_file(path: str | Path, block: int = 4 << 20) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def describe_inputs(paths: Iterable[str | Path], checksums: bool = True) -> list[dict]:
    """Path, size and SHA-256 (optional) of each input file."""
    out = []
    for p in paths:
        p = Path(p)
        entry = {"path": str(p), "resolved": str(p.resolve()), "bytes": p.stat().st_size}
        if checksums:
            entry["sha256"] = sha256_file(p)
        out.append(entry)
    return out


def versions() -> dict[str, str]:
    """Versions of geoprom3e, Python and the libraries that shape the outputs."""
    out = {"geoprom3e": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for mod in ("numpy", "scipy", "pyarrow", "rasterio", "xarray", "rioxarray", "netCDF4", "pyproj", "matplotlib"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - optional
            continue
    try:
        import rasterio

        out["gdal"] = rasterio.__gdal_version__
    except Exception:  # pragma: no cover
        pass
    return out


def build_manifest(
    *,
    kind: str,
    grid: Mapping[str, object],
    inputs: list[dict] | None = None,
    counts: Mapping[str, object] | None = None,
    timings: Mapping[str, float] | None = None,
    outputs: Iterable[str] = (),
    failures: list[dict] | None = None,
    extra: Mapping[str, object] | None = None,
) -> dict:
    """The manifest as a JSON-ready dict."""
    doc = {
        "kind": kind,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "grid": dict(grid),
        "inputs": inputs or [],
        "counts": dict(counts or {}),
        "failures": failures or [],
        "timings_s": {k: round(float(v), 4) for k, v in (timings or {}).items()},
        "outputs": sorted(outputs),
        "versions": versions(),
    }
    if extra:
        doc.update(extra)
    return doc


def to_json(doc: object) -> str:
    """Pretty JSON with a trailing newline (numpy scalars and paths become plain values)."""
    return json.dumps(doc, indent=2, default=_default, ensure_ascii=False) + "\n"


def _default(o: object) -> object:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)
