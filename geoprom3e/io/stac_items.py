"""STAC metadata for map outputs: one Item per map (``<basename>.stac.json``) and a folder ``catalog.json``.

Every map folder is a self-contained STAC catalog: all hrefs are relative (``./div.tif``), so the folder
can be moved or served as it is, and ``pystac.Catalog.from_file(out / "catalog.json")`` walks every map in
it. Each Item describes one map:

- ``geometry``/``bbox``: the grid's footprint in EPSG:4326 (edges densified, so projected grids such as
  EPSG:5070 get their curved outline);
- asset ``data``: the COG (roles ``data``), with ``proj:code`` (``"EPSG:5070"``; projection extension v2.0
  replaced ``proj:epsg`` by ``proj:code``) or ``proj:wkt2`` when the CRS has no EPSG code, ``proj:shape``,
  ``proj:transform``, ``proj:bbox``, ``raster:bands`` (nodata, ``float32``, unit, statistics) and
  ``eo:bands`` (band name = layer name, description = long name), all in band order;
- asset ``netcdf`` (roles ``data``), ``quicklook_<layer>`` PNGs (roles ``overview``; the first one also
  ``thumbnail``), ``qgis_style``, and ``settings``/``manifest`` (roles ``metadata``), the last two also linked
  with ``rel="describedby"``;
- ``datetime`` is null with ``start_datetime``/``end_datetime`` the imagery window or the records' date
  range; when no range is known the creation time is the ``datetime`` (and ``geoprom3e:datetime_source`` says
  ``"created"``).

The projection fields live on the COG asset only (not in the Item's properties), so that
``odc.stac.load([item])`` loads the COG's bands (named after the layers) and skips the NetCDF and the PNGs.
stackstac reads only the retired ``proj:epsg``, which pystac drops on read: pass it ``epsg=`` there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pystac
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension, Statistics

from geoprom3e.errors import InputError, OutputError
from geoprom3e.grid.spec import GridSpec
from geoprom3e.io.atomic import atomic_write_text
from geoprom3e.io.layers import NODATA, LayerInfo

if TYPE_CHECKING:
    from geoprom3e.io.maps import MapOutputs

log = logging.getLogger(__name__)

#: Suffix of every map's STAC Item file (``<basename>.stac.json``).
ITEM_SUFFIX = ".stac.json"
#: Name of the folder's STAC Catalog file.
CATALOG_NAME = "catalog.json"
#: Media type of a Cloud-Optimized GeoTIFF asset.
COG_MEDIA_TYPE = str(pystac.MediaType.COG)
NETCDF_MEDIA_TYPE = "application/netcdf"
#: Property keys passed through unchanged by :func:`map_item`; any other key without a ``:`` gets ``geoprom3e:``.
COMMON_KEYS = frozenset({
    "title", "description", "keywords", "roles", "license", "providers", "platform", "instruments",
    "constellation", "mission", "gsd", "created", "updated",
})
_DENSIFY = 32  # points per footprint edge when reprojecting to EPSG:4326


def item_path(outputs: MapOutputs) -> Path:
    """``<basename>.stac.json`` beside the map's GeoTIFF: where :func:`write_item` puts the map's Item."""
    return outputs.geotiff.with_name(outputs.geotiff.stem + ITEM_SUFFIX)


def map_item(
    outputs: MapOutputs,
    grid: GridSpec,
    layers: Sequence[str] | Mapping[str, LayerInfo],
    *,
    info: Mapping[str, LayerInfo] | None = None,
    arrays: Mapping[str, np.ndarray] | None = None,
    datetime_range: tuple[dt.datetime | dt.date, dt.datetime | dt.date] | None = None,
    created: dt.datetime | None = None,
    properties: Mapping[str, object] | None = None,
    nodata: float = NODATA,
    item_id: str | None = None,
) -> pystac.Item:
    """The STAC Item of one map written by :func:`~geoprom3e.io.maps.write_maps` (nothing is read or written).

    Hrefs are relative to the Item's own folder (``./<file name>``), which is the outputs' folder, so the
    Item can be built while the files still sit in write_maps' staging folder.

    Args:
        outputs: the map's paths (only their names are used); PNGs, settings and manifest are optional.
        grid: the grid the map is on: CRS, transform and shape of the GeoTIFF.
        layers: layer names in band order, or name → :class:`LayerInfo` in band order.
        info: per-layer metadata (overrides ``layers``' values); missing layers get ``LayerInfo()``.
        arrays: the layers' values (name → [rows, cols], NaN = no data); when given, each band's
            ``raster:bands`` gets ``statistics`` (minimum, maximum, mean, stddev, valid_percent).
        datetime_range: (start, end) of the imagery window or of the records behind the map; dates mean whole
            UTC days, naive datetimes are taken as UTC. ``None``: the Item's ``datetime`` is ``created``.
        created: when the map was made (default: now, UTC); written as ``created``.
        properties: extra Item properties (e.g. write_maps' ``attrs``); keys without a ``:`` that are not STAC
            common metadata get a ``geoprom3e:`` prefix; values are made JSON-safe (``str`` as a last resort).
        nodata: the GeoTIFF's no-data value.
        item_id: the Item id (default: the GeoTIFF's stem, unique within a folder).
    """
    names = list(layers)
    if not names:
        raise OutputError("a STAC Item needs at least one layer name (the GeoTIFF's bands, in order)")
    infos: dict[str, LayerInfo] = {}
    if isinstance(layers, Mapping):
        infos.update({k: v for k, v in layers.items() if isinstance(v, LayerInfo)})
    infos.update(info or {})
    created = _utc(created or dt.datetime.now(dt.timezone.utc))
    geometry, bbox = footprint_lonlat(grid)

    props: dict[str, Any] = {}
    for key, value in (properties or {}).items():
        key = str(key)
        if ":" not in key and key not in COMMON_KEYS:
            key = f"geoprom3e:{key}"
        props[key] = _json_safe(value)
    props.setdefault("title", outputs.geotiff.stem)
    props["geoprom3e:grid"] = grid.name
    if datetime_range is None:
        start = end = None
        when: dt.datetime | None = created
        props["geoprom3e:datetime_source"] = "created"
    else:
        start, end = _range(datetime_range)
        when = None
    item = pystac.Item(
        id=item_id or outputs.geotiff.stem, geometry=geometry, bbox=bbox, datetime=when, properties=props,
        start_datetime=start, end_datetime=end,
    )
    item.common_metadata.created = created

    data = pystac.Asset(f"./{outputs.geotiff.name}", title=f"{props['title']} (GeoTIFF)", media_type=COG_MEDIA_TYPE,
                        roles=["data"])
    item.add_asset("data", data)
    _add_projection(item, data, grid)
    _add_bands(item, data, grid, names, infos, arrays, nodata)

    item.add_asset("netcdf", pystac.Asset(f"./{outputs.netcdf.name}", title="CF-1.8 NetCDF, one variable per layer",
                                          media_type=NETCDF_MEDIA_TYPE, roles=["data"]))
    for i, (name, png) in enumerate(outputs.pngs.items()):
        roles = ["thumbnail", "overview"] if i == 0 else ["overview"]
        title = f"{(infos.get(name) or LayerInfo()).long_name or name} (quicklook)"
        item.add_asset(f"quicklook_{name}", pystac.Asset(f"./{png.name}", title=title, media_type=pystac.MediaType.PNG,
                                                         roles=roles))
    item.add_asset("qgis_style", pystac.Asset(f"./{outputs.qml.name}", title="QGIS style of the GeoTIFF",
                                              media_type="application/xml", roles=["style", "metadata"]))
    for key, path, title in (
        ("settings", outputs.settings, "Resolved recipe (settings) that reproduces this map"),
        ("manifest", outputs.manifest, "Run manifest: inputs, versions, timings, failures"),
    ):
        if path is None:
            continue
        href = f"./{path.name}"
        item.add_asset(key, pystac.Asset(href, title=title, media_type=pystac.MediaType.JSON, roles=["metadata"]))
        item.add_link(pystac.Link("describedby", href, media_type=pystac.MediaType.JSON, title=title))
    return item


def write_item(item: pystac.Item, path: str | Path, *, link_catalog: bool = True) -> Path:
    """Write ``item`` as JSON at ``path`` (normally :func:`item_path`) atomically; return ``path``.

    Hrefs are written as they are (relative, as :func:`map_item` makes them) and no ``self`` link is written,
    so the file stays valid when its folder moves. With ``link_catalog`` the file gets ``root`` and ``parent``
    links to ``./catalog.json`` in the same folder (call :func:`update_catalog` on that folder afterwards).
    """
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    links = [ln for ln in d.get("links", []) if ln.get("rel") not in ("self", "root", "parent")]
    if link_catalog:
        cat = {"href": f"./{CATALOG_NAME}", "type": str(pystac.MediaType.JSON)}
        links = [{"rel": "root", **cat}, {"rel": "parent", **cat}, *links]
    d["links"] = links
    return atomic_write_text(path, json.dumps(d, indent=2, allow_nan=False) + "\n")


def update_catalog(
    out_dir: str | Path,
    *,
    title: str | None = None,
    description: str | None = None,
    catalog_id: str | None = None,
) -> Path:
    """(Re)build ``out_dir/catalog.json`` linking every ``*.stac.json`` Item in ``out_dir``; return its path.

    The catalog is rebuilt from the folder's files each time (sorted by name, relative links, no ``self``
    link), so calling it after each map is safe and idempotent, and Items deleted from the folder drop out.
    Hidden files (write_maps' staging folders, temporary files) are ignored; files that are not STAC Items
    are skipped with a warning. ``title``, ``description`` and ``catalog_id`` default to the existing
    catalog's, else to geoprom3e defaults. Concurrent callers on one folder are serialised (POSIX ``flock``).
    """
    folder = Path(out_dir)
    if not folder.is_dir():
        raise OutputError(f"STAC catalog folder {str(folder)!r} is not a folder: pass the maps' output folder")
    path = folder / CATALOG_NAME
    with _folder_lock(folder):
        old = _read_catalog(path)
        links: list[dict[str, Any]] = [{"rel": "root", "href": f"./{CATALOG_NAME}",
                                        "type": str(pystac.MediaType.JSON)}]
        for item_file in sorted(folder.glob(f"*{ITEM_SUFFIX}")):
            if item_file.name.startswith(".") or not item_file.is_file():
                continue
            doc = _read_json(item_file)
            if not isinstance(doc, dict) or doc.get("type") != "Feature" or "id" not in doc:
                log.warning("skipping %s in the STAC catalog: not a STAC Item", item_file)
                continue
            link = {"rel": "item", "href": f"./{item_file.name}", "type": str(pystac.MediaType.GEOJSON)}
            item_title = (doc.get("properties") or {}).get("title")
            if isinstance(item_title, str) and item_title:
                link["title"] = item_title
            links.append(link)
        doc = {
            "type": "Catalog",
            "stac_version": pystac.get_stac_version(),
            "id": catalog_id or old.get("id") or "geoprom3e-maps",
            "title": title or old.get("title") or f"geoprom3e maps in {folder.resolve().name}",
            "description": description or old.get("description")
            or "Maps written by geoprom3e: one STAC Item per map (GeoTIFF, NetCDF, quicklooks, recipe, manifest).",
            "links": links,
        }
        text = json.dumps(doc, indent=2) + "\n"
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
    return path


def footprint_lonlat(grid: GridSpec) -> tuple[dict[str, Any], list[float]]:
    """GeoJSON geometry and bbox [W, S, E, N] of the grid's outer edges in EPSG:4326 (lon, lat degrees).

    Projected (or other geographic) CRSs are handled by reprojecting the footprint's edges densified to
    32 points each, so the polygon follows curved edges and the bbox covers the whole grid. Longitudes are
    brought into −180..180; a footprint that crosses the antimeridian becomes a MultiPolygon split there
    and its bbox has W > E, as the STAC spec asks. Grids that contain a pole are not supported.
    """
    w, s, e, n = grid.bbox
    if grid.epsg == 4326:
        lon = np.array([w, e, e, w], dtype=np.float64)
        lat = np.array([s, s, n, n], dtype=np.float64)
    else:
        from pyproj import Transformer

        t = np.linspace(0.0, 1.0, _DENSIFY, endpoint=False)
        xs = np.concatenate([w + (e - w) * t, np.full_like(t, e), e - (e - w) * t, np.full_like(t, w)])
        ys = np.concatenate([np.full_like(t, s), s + (n - s) * t, np.full_like(t, n), n - (n - s) * t])
        lon, lat = Transformer.from_crs(grid.crs_obj, "EPSG:4326", always_xy=True).transform(xs, ys)
        lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
            raise OutputError(f"grid {grid.name!r} (bbox {grid.bbox}) cannot be reprojected to EPSG:4326 for its "
                              "STAC footprint: use a grid inside the CRS's area of use")
        lon = np.unwrap(lon, period=360.0)  # continuous across the antimeridian
    lon = lon - 360.0 * np.floor((lon.min() + 180.0) / 360.0)  # western edge in −180..180
    if lon.max() - lon.min() >= 360.0:
        bbox = [-180.0, float(lat.min()), 180.0, float(lat.max())]
        lon = np.clip(lon, -180.0, 180.0)
    elif lon.max() > 180.0:
        bbox = [float(lon.min()), float(lat.min()), float(lon.max()) - 360.0, float(lat.max())]
    else:
        bbox = [float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())]
    ring = [*zip(lon.tolist(), lat.tolist())]
    if lon.max() <= 180.0:
        return _geojson_polygon(ring), [round(v, 9) for v in bbox]
    from shapely.affinity import translate
    from shapely.geometry import MultiPolygon, Polygon, box

    poly = Polygon(ring)
    west = poly.intersection(box(-180.0, -90.0, 180.0, 90.0))
    east = translate(poly.intersection(box(180.0, -90.0, 540.0, 90.0)), xoff=-360.0)
    parts = [p for g in (west, east) for p in getattr(g, "geoms", [g]) if isinstance(p, Polygon) and not p.is_empty]
    geometry = {
        "type": "MultiPolygon",
        "coordinates": _geojson_polygon_coords(MultiPolygon(parts)),
    }
    return geometry, [round(v, 9) for v in bbox]


def _geojson_polygon(ring: list[tuple[float, float]]) -> dict[str, Any]:
    pts = [[round(x, 9), round(y, 9)] for x, y in ring]
    return {"type": "Polygon", "coordinates": [[*pts, pts[0]]]}


def _geojson_polygon_coords(mp: Any) -> list[Any]:
    from shapely.geometry.polygon import orient

    out = []
    for poly in mp.geoms:
        ring = list(orient(poly, 1.0).exterior.coords)
        out.append([[[round(x, 9), round(y, 9)] for x, y in ring]])
    return out


# -- helpers ----------------------------------------------------------------------------------------------------
def _add_projection(item: pystac.Item, asset: pystac.Asset, grid: GridSpec) -> None:
    ProjectionExtension.add_to(item)
    proj = ProjectionExtension.ext(asset)
    epsg = grid.epsg
    if epsg is not None:
        proj.epsg = epsg
    else:
        proj.code = None
        proj.wkt2 = grid.crs_obj.to_wkt()
    proj.shape = [grid.rows, grid.cols]
    proj.transform = list(grid.transform)[:6]
    proj.bbox = list(grid.bbox)


def _add_bands(
    item: pystac.Item,
    asset: pystac.Asset,
    grid: GridSpec,
    names: list[str],
    infos: Mapping[str, LayerInfo],
    arrays: Mapping[str, np.ndarray] | None,
    nodata: float,
) -> None:
    RasterExtension.add_to(item)
    EOExtension.add_to(item)
    resolution = None
    if not grid.is_geographic:
        dx_km, dy_km = grid.cell_size_km()
        resolution = 1000.0 * min(dx_km, dy_km)
    raster_bands, eo_bands = [], []
    for name in names:
        li = infos.get(name) or LayerInfo()
        stats = _statistics(arrays[name], nodata) if arrays is not None and name in arrays else None
        raster_bands.append(RasterBand.create(nodata=nodata, data_type=DataType.FLOAT32, unit=li.units or None,
                                              spatial_resolution=resolution, statistics=stats))
        eo_bands.append(Band.create(name=name, description=li.long_name or li.description or None))
    RasterExtension.ext(asset).bands = raster_bands
    EOExtension.ext(asset).bands = eo_bands


def _statistics(values: np.ndarray, nodata: float) -> Statistics | None:
    a = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(a) & (a != nodata)
    n = int(ok.sum())
    if n == 0:
        return Statistics.create(valid_percent=0.0)
    v = a[ok]
    return Statistics.create(minimum=float(v.min()), maximum=float(v.max()), mean=float(v.mean()),
                             stddev=float(v.std()), valid_percent=round(100.0 * n / a.size, 6))


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def _range(rng: tuple[dt.datetime | dt.date, dt.datetime | dt.date]) -> tuple[dt.datetime, dt.datetime]:
    try:
        start, end = rng
    except (TypeError, ValueError):
        raise InputError(f"datetime_range {rng!r} must be a (start, end) pair of dates or datetimes") from None
    out = []
    for value, end_of_day in ((start, False), (end, True)):
        if isinstance(value, dt.datetime):
            out.append(_utc(value))
        elif isinstance(value, dt.date):
            t = dt.time(23, 59, 59) if end_of_day else dt.time(0, 0, 0)
            out.append(dt.datetime.combine(value, t, tzinfo=dt.timezone.utc))
        else:
            raise InputError(f"datetime_range {rng!r}: {value!r} is not a date or datetime; pass (start, end)")
    if out[0] > out[1]:
        raise InputError(f"datetime_range ({out[0].isoformat()}, {out[1].isoformat()}): start is after end; "
                         "swap them")
    return out[0], out[1]


def _json_safe(value: object) -> Any:
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("cannot read %s (%s)", path, exc)
        return None


def _read_catalog(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    doc = _read_json(path)
    if not isinstance(doc, dict) or doc.get("type") != "Catalog":
        raise OutputError(f"{str(path)!r} exists and is not a STAC Catalog: move it aside so geoprom3e can keep "
                          "the folder's catalog there")
    return doc


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no flock; rebuilds are still atomic, only concurrent ones may race
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
