"""``write_maps``: every map's outputs in one call (COG + QGIS style, CF NetCDF, PNGs, manifest, settings).

All files are written into a hidden staging folder inside ``out_dir`` and moved into place only when all
of them succeeded, so a failed or interrupted run leaves no partial outputs behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from geoprom3e._version import __version__
from geoprom3e.errors import OutputError
from geoprom3e.grid.spec import GridSpec
from geoprom3e.io.layers import NODATA, LayerInfo, check_layers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MapOutputs:
    """Paths written by :func:`write_maps`."""

    geotiff: Path
    """Cloud-Optimized GeoTIFF, one band per layer."""
    qml: Path
    """QGIS style beside the GeoTIFF (same stem)."""
    netcdf: Path
    """CF-1.8 NetCDF, one variable per layer."""
    pngs: dict[str, Path] = field(default_factory=dict)
    """Layer name → PNG quicklook."""
    manifest: Path | None = None
    """``<basename>.manifest.json``."""
    settings: Path | None = None
    """``<basename>.settings.json`` (the resolved recipe)."""
    stac: Path | None = None
    """``<basename>.stac.json``: a STAC Item of the map, linked from the folder's ``catalog.json``."""

    def all(self) -> list[Path]:
        """Every path, in a stable order."""
        out = [self.geotiff, self.qml, self.netcdf, *self.pngs.values()]
        return out + [p for p in (self.manifest, self.settings, self.stac) if p is not None]


def plan_outputs(out_dir: str | Path, basename: str, layer_names: Sequence[str], png: bool = True) -> MapOutputs:
    """The paths :func:`write_maps` will write, without writing anything."""
    d = Path(out_dir)
    pngs = {name: d / f"{basename}_{name}.png" for name in layer_names} if png else {}
    return MapOutputs(
        geotiff=d / f"{basename}.tif", qml=d / f"{basename}.qml", netcdf=d / f"{basename}.nc", pngs=pngs,
        manifest=d / f"{basename}.manifest.json", settings=d / f"{basename}.settings.json",
        stac=d / f"{basename}.stac.json",
    )


def check_outputs(outputs: MapOutputs, overwrite: bool) -> None:
    """Refuse existing outputs without ``overwrite`` and unwritable folders, before any work starts.

    Creates nothing: the folder is made only when the outputs are written.
    """
    check_output_paths(outputs.geotiff.parent, outputs.all(), overwrite)


def check_output_paths(folder: Path, paths: Iterable[Path], overwrite: bool) -> None:
    """Refuse an ``--out`` that is a file or cannot be created or written, and (without ``overwrite``) any of
    ``paths`` that exists already. Creates nothing."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--out {str(folder)!r} is a file, not a folder: choose a folder path")
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot create output folder {str(folder)!r}: {str(probe)!r} is a file; "
                          "choose a writable --out")
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "" if probe == folder else f" (its parent {str(probe)!r} is not writable)"
        raise OutputError(f"output folder {str(folder)!r} is not writable{where}: choose another --out or fix "
                          "permissions")
    if not overwrite:
        existing = [Path(p) for p in paths if Path(p).exists()]
        if existing:
            more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
            raise OutputError(
                f"output {str(existing[0])!r}{more} already exists: "
                "pass --overwrite to replace, or choose another --out"
            )


def previous_outputs(outputs: MapOutputs) -> list[Path]:
    """Files of an earlier output set with the same name (from its manifest), to remove on ``--overwrite``."""
    import json

    folder = outputs.geotiff.parent
    old = set(p for p in outputs.all() if p.exists())
    try:
        listed = json.loads(outputs.manifest.read_text()).get("outputs", []) if outputs.manifest else []
    except (OSError, ValueError):
        listed = []
    for name in listed:
        p = folder / Path(str(name)).name
        if p.exists():
            old.add(p)
    return sorted(old)


def _publish(stage: Path, outputs: MapOutputs, overwrite: bool) -> None:
    """Move staged files into place. Without ``overwrite`` each file is linked with no-replace semantics, so
    of two runs writing the same names at once exactly one wins and the other gets one line."""
    final = [p for p in outputs.all() if (stage / p.name).exists()]
    if overwrite:
        for p in previous_outputs(outputs):
            if p not in final:
                p.unlink(missing_ok=True)
        for p in final:
            os.replace(stage / p.name, p)
        return
    done: list[Path] = []
    for p in final:
        try:
            os.link(stage / p.name, p)
        except FileExistsError:
            for q in done:
                q.unlink(missing_ok=True)
            raise OutputError(f"output {str(p)!r} appeared while this run was writing (another run on the same "
                              "--out?): pass --overwrite to replace it, or choose another --out") from None
        done.append(p)


def write_maps(
    out_dir: str | Path,
    grid: GridSpec,
    layers: Mapping[str, np.ndarray],
    *,
    basename: str = "maps",
    info: Mapping[str, LayerInfo] | None = None,
    attrs: Mapping[str, object] | None = None,
    overwrite: bool = False,
    png: bool = True,
    manifest: Mapping[str, object] | None = None,
    settings: Mapping[str, object] | None = None,
    nodata: float = NODATA,
    datetime_range: tuple | None = None,
) -> MapOutputs:
    """Write named float [rows, cols] layers on any grid as GeoTIFF (COG) + .qml, NetCDF, PNGs and JSON.

    Args:
        out_dir: folder for the outputs (created if needed).
        grid: the grid the layers are on (``shape`` must match each layer).
        layers: name → array; NaN (or cells outside ``grid.mask()``) is written as no-data.
        basename: file stem: ``<basename>.tif``, ``.qml``, ``.nc``, ``<basename>_<layer>.png``, ``.manifest.json``.
        info: per-layer long name, units and colour map.
        attrs: dataset-level metadata (GeoTIFF tags, NetCDF global attributes), e.g. method and σ;
            ``software`` (package version) and ``grid_name`` are added.
        overwrite: replace existing outputs; without it existing outputs raise :class:`OutputError`.
        png: also write one PNG quicklook per layer.
        manifest: run facts (see :func:`geoprom3e.io.manifest.build_manifest`); ``outputs`` is filled in.
        settings: the resolved recipe, written as ``<basename>.settings.json``.
        nodata: value written for no-data cells.
        datetime_range: (start, end) of the imagery or records behind the map, for its STAC Item (else the
            item's datetime is the creation time).
    """
    from geoprom3e.io.geotiff import write_cog
    from geoprom3e.io.manifest import to_json
    from geoprom3e.io.netcdf import write_netcdf
    from geoprom3e.io.qml import qml_style
    from geoprom3e.io.quicklook import write_png
    from geoprom3e.io.stac_items import map_item, update_catalog, write_item

    arrays = check_layers(grid.shape, layers)
    info = dict(info or {})
    outputs = plan_outputs(out_dir, basename, list(arrays), png=png)
    if settings is None:
        outputs = replace(outputs, settings=None)
    check_outputs(outputs, overwrite)
    folder = outputs.geotiff.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{basename}.staging-", dir=folder))
    except OSError as exc:
        msg = f"cannot create output folder {str(folder)!r} ({exc.strerror}): choose a writable --out"
        raise OutputError(msg) from None
    timings: dict[str, float] = {}
    tags = {"software": f"geoprom3e {__version__}", "grid_name": grid.name, **dict(attrs or {})}
    try:
        t = time.perf_counter()
        write_cog(stage / outputs.geotiff.name, grid, arrays, info=info, tags=tags, nodata=nodata)
        first = next(iter(arrays))
        li = info.get(first, LayerInfo())
        (stage / outputs.qml.name).write_text(
            qml_style(arrays[first], cmap=li.cmap, label=li.long_name or first), encoding="utf-8"
        )
        timings["write_geotiff"] = time.perf_counter() - t
        t = time.perf_counter()
        write_netcdf(stage / outputs.netcdf.name, grid, arrays, info=info, attrs=tags, nodata=nodata)
        timings["write_netcdf"] = time.perf_counter() - t
        t = time.perf_counter()
        for name, path in outputs.pngs.items():
            li = info.get(name, LayerInfo())
            units = "" if li.units in ("1", "") else f" ({li.units})"
            write_png(stage / path.name, grid, arrays[name], title=f"{li.long_name or name} — {grid.name}",
                      label=f"{name}{units}", cmap=li.cmap)
        timings["write_png"] = time.perf_counter() - t
        if settings is not None:
            (stage / outputs.settings.name).write_text(to_json(dict(settings)), encoding="utf-8")
        doc = dict(manifest or {})
        doc["outputs"] = [p.name for p in outputs.all()]
        doc.setdefault("timings_s", {}).update({k: round(v, 4) for k, v in timings.items()})
        (stage / outputs.manifest.name).write_text(to_json(doc), encoding="utf-8")
        item = map_item(outputs, grid, list(arrays), info=info, arrays=arrays, datetime_range=datetime_range,
                        properties=tags, nodata=nodata)
        write_item(item, stage / outputs.stac.name)
        _publish(stage, outputs, overwrite)
        update_catalog(folder)
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(_write_failed(folder, exc)) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    log.info("wrote %d files to %s", len(outputs.all()), folder)
    return outputs


def _write_failed(folder: Path, exc: OSError) -> str:
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free"
    except OSError:
        free = "free space unknown"
    return (f"writing outputs to {str(folder)!r} failed ({exc.strerror or exc}; {free}): free some space or "
            "choose another --out; nothing was written")
