"""Named grid presets (``grids/*.json``), user grid files, and grids built from command-line flags."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

from geoprom3e.errors import GridError
from geoprom3e.grid.mask import grids_dir
from geoprom3e.grid.spec import GridSpec


@functools.lru_cache(maxsize=4)
def _presets(folder: str) -> dict[str, GridSpec]:
    out = {}
    for path in sorted(Path(folder).glob("*.json")):
        spec = load_grid_file(path)
        out[spec.name] = spec
    return out


def list_grids() -> list[str]:
    """Names of the preset grids, sorted."""
    return sorted(_presets(str(grids_dir())))


def load_grid_file(path: str | Path) -> GridSpec:
    """Read a grid file: JSON (or YAML) with keys name, crs, bbox [W, S, E, N], shape [rows, cols], mask."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GridError(f"grid file {str(path)!r} does not exist: pass a preset name or an existing file") from None
    except UnicodeDecodeError:
        raise GridError(f"grid file {str(path)!r} is not UTF-8 text: pass a JSON or YAML grid file") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except Exception as exc:
        raise GridError(f"grid file {str(path)!r} cannot be parsed ({exc}): fix its JSON/YAML") from None
    if not isinstance(doc, dict):
        raise GridError(f"grid file {str(path)!r} must hold one mapping with name, crs, bbox, shape")
    if isinstance(doc.get("grid"), dict):  # a map's <name>.settings.json: the grid it was drawn on
        doc = doc["grid"]
    elif path.name.endswith(".settings.json") or not {"crs", "bbox", "shape"} <= set(doc):
        raise GridError(f"{str(path)!r} is neither a grid file (name, crs, bbox, shape) nor a map's settings.json "
                        f"(it has keys {', '.join(sorted(doc)[:8])}): pass a preset name, a grid file or "
                        "<map>.settings.json")
    doc.setdefault("name", path.stem)
    return GridSpec.from_dict(doc)


def get_grid(name: str) -> GridSpec:
    """A preset by name (see :func:`list_grids`), or a grid file path (``.json``/``.yaml``)."""
    presets = _presets(str(grids_dir()))
    if name in presets:
        return presets[name]
    if name.lower().endswith((".json", ".yaml", ".yml")) or Path(name).is_file():
        return load_grid_file(name)
    raise GridError(f"unknown grid {name!r}: choose one of {', '.join(sorted(presets))} or pass a grid file")


def grid_from_options(
    grid: str | None = None,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    shape: tuple[int, int] | None = None,
    res: tuple[float, float] | float | None = None,
    crs: str | None = None,
    mask: str | None = None,
    default: str = "usa-250x500",
) -> GridSpec:
    """Resolve the grid flags every map command shares.

    - ``grid`` alone: a preset or grid file; with ``bbox``: that grid's cells whose centres fall inside.
    - ``bbox`` with ``shape`` or ``res`` (and optional ``crs``, default EPSG:4326): a custom grid.
    - ``mask`` replaces the mask source (``conus``, ``none`` or a GeoJSON/GeoTIFF path).
    """
    if shape is not None and res is not None:
        raise GridError("pass either --shape or --res, not both")
    if (shape is not None or res is not None) and bbox is None:
        raise GridError("--shape/--res need --bbox W S E N to define a custom grid")
    if bbox is not None and (shape is not None or res is not None):
        if grid is not None:
            raise GridError("pass either --grid or a custom --bbox with --shape/--res, not both")
        w, s, e, n = (float(v) for v in bbox)
        if shape is None:
            rx, ry = (res, res) if isinstance(res, (int, float)) else tuple(res)
            if rx <= 0 or ry <= 0:
                raise GridError(f"--res {rx:g} {ry:g} must be positive (cell size in CRS units)")
            if w < e and s < n:
                shape = (max(1, math.ceil(round((n - s) / ry, 9))), max(1, math.ceil(round((e - w) / rx, 9))))
                e, s = w + shape[1] * rx, n - shape[0] * ry  # snap east/south to whole cells
            else:
                shape = (1, 1)  # let GridSpec explain the inverted bbox
        spec = GridSpec("custom", crs or "EPSG:4326", (w, s, e, n), shape, mask_source=mask or "conus")
        return spec
    spec = get_grid(grid or default)
    if crs is not None and spec.crs_obj != GridSpec("x", crs, (0, 0, 1, 1), (1, 1)).crs_obj:
        raise GridError(f"--crs {crs} differs from grid {spec.name!r}'s {spec.crs}: use --bbox with --shape/--res")
    if bbox is not None:
        spec = spec.subset(tuple(bbox))
    if mask is not None:
        spec = GridSpec(spec.name, spec.crs, spec.bbox, spec.shape, mask_source=mask, description=spec.description)
    return spec


def ensure_fits_in_memory(grid: GridSpec, bytes_per_cell: int, what: str = "maps", fraction: float = 0.5) -> None:
    """Raise :class:`GridError` when ``grid`` needs more than ``fraction`` of the available memory."""
    import psutil

    need = grid.n_cells * bytes_per_cell
    avail = psutil.virtual_memory().available
    if need > fraction * avail:
        raise GridError(
            f"grid {grid.name!r} is {grid.rows:,} × {grid.cols:,} = {grid.n_cells:,} cells; {what} need about "
            f"{need / 2**30:.1f} GiB but {avail / 2**30:.1f} GiB is available: "
            "use a coarser --res/--shape or a --bbox subset"
        )
