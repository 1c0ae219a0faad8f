"""``diversity_map``: Shannon diversity and species richness per cell from observation records (one call per
command): read the files (streamed, prefetched on a thread), reduce on the grid with :mod:`geoprom3e.maps.diversity`,
write every output, and return the layers as an xarray Dataset."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from geoprom3e.errors import ObservationError
from geoprom3e.grid.spec import GridSpec
from geoprom3e.io.maps import MapOutputs
from geoprom3e.io.observations import ObservationChunk, ObservationReader, ReadOptions
from geoprom3e.maps.diversity import (
    BYTES_PER_CELL,
    DIVERSITY_LAYERS,
    DiversityResult,
    DiversitySettings,
    diversity_attrs,
    diversity_from_chunks,
    diversity_layer_info,
    settings_dict,
)
from geoprom3e.products.base import DEFAULT_OUT, MapProduct, ProductResult, dataset
from geoprom3e.progress import ProgressCallback, report


def compute_diversity(
    paths: Sequence[str | Path],
    grid: GridSpec,
    settings: DiversitySettings | None = None,
    read_options: ReadOptions | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> DiversityResult:
    """Read observation files and compute Shannon/richness layers on ``grid``.

    Raises :class:`ObservationError` when no record falls inside the grid (with the records' extent).
    """
    from geoprom3e.grid.presets import ensure_fits_in_memory

    read_options = read_options or ReadOptions()
    ensure_fits_in_memory(grid, BYTES_PER_CELL, "diversity maps")
    reader = ObservationReader(paths, read_options)

    def reported() -> Iterable[ObservationChunk]:
        before = 0
        for chunk in reader:
            if progress is not None:
                progress(reader.rows - before)
                before = reader.rows
            yield chunk

    result = diversity_from_chunks(prefetch(reported()), grid, settings, weighted=read_options.use_abundance)
    dropped = dict(reader.dropped)
    dropped.update({k: v for k, v in result.counts["dropped"].items()})
    result.counts.update({
        "records_read": reader.rows,
        "dropped": {k: v for k, v in dropped.items() if v},
        "files": [f.to_dict() for f in reader.files],
    })
    if result.counts["records_kept"] == 0:
        raise ObservationError(_nothing_inside(reader, grid, result.counts))
    return result


def prefetch(items: Iterable[ObservationChunk], depth: int = 2) -> Iterator[ObservationChunk]:
    """Produce ``items`` on a background thread (parsing releases the GIL) while the caller aggregates.

    At most ``depth`` chunks wait in the queue, so memory stays bounded; errors re-raise in the caller.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=work, name="geoprom3e-read", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _nothing_inside(reader: ObservationReader, grid: GridSpec, counts: dict) -> str:
    names = ", ".join(str(p) for p in reader.paths)
    dropped = counts["dropped"]
    table = "; ".join(f"{reason}: {n:,}" for reason, n in sorted(dropped.items(), key=lambda kv: -kv[1])) or "none"
    if reader.kept == 0:
        return (f"no usable records in {names}: {reader.rows:,} read, all dropped ({table}): relax the filters "
                "(--keep-absences, --above-species count, --years, --max-coordinate-uncertainty, --basis-of-record, "
                "--rank, --quality-grade, --date-from/--date-to) or check the columns")
    lat = [f.lat_range for f in reader.files if f.lat_range]
    lon = [f.lon_range for f in reader.files if f.lon_range]
    extent = (f"lat {min(r[0] for r in lat):.3f}..{max(r[1] for r in lat):.3f}, "
              f"lon {min(r[0] for r in lon):.3f}..{max(r[1] for r in lon):.3f}")
    return (f"none of the {reader.kept:,} records in {names} falls inside grid {grid.name!r} "
            f"(bbox {tuple(round(v, 6) for v in grid.bbox)}, {grid.crs}; records span {extent}; "
            f"dropped {table}): "
            "choose a grid that covers them (--grid/--bbox) or check --lat-column/--lon-column")



@dataclass(frozen=True)
class DiversityRun:
    """What :func:`write_diversity_map` computed and wrote."""

    result: DiversityResult
    """Layers and counts."""
    outputs: MapOutputs
    """Files written."""


def write_diversity_map(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    grid: GridSpec,
    settings: DiversitySettings | None = None,
    read_options: ReadOptions | None = None,
    *,
    overwrite: bool = False,
    png: bool = True,
    checksums: bool = True,
    basename: str = "diversity",
    progress: Callable[[int], None] | None = None,
) -> DiversityRun:
    """Read observations, compute diversity layers and write ``<out_dir>/diversity.{tif,qml,nc}``, PNGs and JSON.

    Existing outputs without ``overwrite`` and unwritable folders are refused before any record is read.
    """
    from geoprom3e.io.manifest import build_manifest, describe_inputs
    from geoprom3e.io.maps import check_outputs, plan_outputs, write_maps

    settings = settings or DiversitySettings()
    read_options = read_options or ReadOptions()
    check_outputs(plan_outputs(out_dir, basename, DIVERSITY_LAYERS, png=png), overwrite)
    t0 = time.perf_counter()
    result = compute_diversity(paths, grid, settings, read_options, progress=progress)
    t1 = time.perf_counter()
    inputs = describe_inputs(paths, checksums=checksums)
    t2 = time.perf_counter()
    weighted = read_options.use_abundance
    recipe = {
        "command": "diversity-map",
        "inputs": [str(p) for p in paths],
        "grid": grid.to_dict(),
        "diversity": settings_dict(settings),
        "read": {
            "columns": asdict(read_options.columns),
            "filters": asdict(read_options.filters),
            "use_abundance": read_options.use_abundance,
        },
        "resolved_columns": [f["columns"] for f in result.counts["files"]],
    }
    manifest = build_manifest(
        kind="diversity-map", grid=grid.to_dict(), inputs=inputs, counts=result.counts,
        timings={"compute": t1 - t0, "checksums": t2 - t1, **result.timings},
    )
    outputs = write_maps(
        out_dir, grid, result.layers, basename=basename, info=diversity_layer_info(settings, grid, weighted),
        attrs={**diversity_attrs(settings, grid, weighted), "inputs": ", ".join(Path(p).name for p in paths),
               "records_kept": result.counts["records_kept"]},
        overwrite=overwrite, png=png, manifest=manifest,
        settings=recipe, datetime_range=records_date_range(result.counts.get("files", [])),
    )
    result.timings["total"] = time.perf_counter() - t0
    return DiversityRun(result, outputs)


def records_date_range(files: list[dict]) -> tuple | None:
    """(first, last) observation day over the files' kept records, as dates, or None when none carries a date."""
    import datetime as dt

    ranges = [f["date_range"] for f in files if f.get("date_range")]
    if not ranges:
        return None
    return (dt.date.fromisoformat(min(r[0] for r in ranges)), dt.date.fromisoformat(max(r[1] for r in ranges)))


def diversity_map(
    observations: Sequence[str | Path],
    grid: GridSpec,
    *,
    out_dir: str | Path = DEFAULT_OUT,
    settings: DiversitySettings | None = None,
    read_options: ReadOptions | None = None,
    overwrite: bool = False,
    png: bool = True,
    checksums: bool = True,
    progress: ProgressCallback | None = None,
) -> ProductResult:
    """Read records, compute the diversity layers and write ``diversity.{tif,qml,nc}``, PNGs, manifest, STAC item."""
    settings = settings or DiversitySettings()
    read_options = read_options or ReadOptions()
    run = write_diversity_map(observations, out_dir, grid, settings, read_options, overwrite=overwrite, png=png,
                              checksums=checksums,
                              progress=lambda n: report(progress, "read records", n, unit="records"))
    weighted = read_options.use_abundance
    info = diversity_layer_info(settings, grid, weighted)
    attrs = diversity_attrs(settings, grid, weighted)
    prod = MapProduct("diversity", dataset(grid, run.result.layers, info, attrs), run.outputs)
    return ProductResult([prod], run.result.summary(), {"counts": run.result.counts})
