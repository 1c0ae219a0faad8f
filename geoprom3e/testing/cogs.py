"""Test COGs laid out as scenes: ``ROOT/<item_id>/<ASSET>.tif`` plus ``ROOT/<item_id>/properties.json``.

Two kinds: the real Sentinel-2 chips of ``../shared/data/sentinel2_l2a_chips_california_fires/post_fire`` warped to
UTM at 10 m as Planetary Computer stores them (``visual`` from TCI_R/G/B, ``B08`` from B8, ``B12`` at 20 m; their
``SCL`` is made up: all vegetation, since the source has none), and small synthetic scenes whose size, pixels,
nodata edge and SCL clouds a test controls. :func:`geoprom3e.testing.stac.build_items` turns either into STAC items.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import Resampling, calculate_default_transform, reproject

COG_PROFILE = {"driver": "COG", "blocksize": 256, "compress": "deflate", "overview_resampling": "nearest"}


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 UTM zone holding (lon, lat)."""
    zone = int((lon + 180) // 6) + 1
    return (32600 if lat >= 0 else 32700) + zone


def write_cog(path: str | Path, data: np.ndarray, epsg: int, transform, nodata: float | None = 0) -> Path:
    """Write ``data`` [bands, h, w] as a tiled, deflate-compressed COG with overviews."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prof = dict(COG_PROFILE, width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype.name,
                crs=f"EPSG:{epsg}", transform=transform, nodata=nodata)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
    return path


def write_properties(scene_dir: Path, datetime: str, cloud_cover: float, epsg: int, mgrs_tile: str = "",
                     **extra) -> None:
    """The scene's item properties (merged into the PC-style template by ``build_items``)."""
    props = {"datetime": datetime, "eo:cloud_cover": float(cloud_cover), "proj:epsg": int(epsg),
             "s2:mgrs_tile": mgrs_tile, **extra}
    (scene_dir / "properties.json").write_text(json.dumps(props, indent=1))


def write_synthetic_scene(root: str | Path, item_id: str, *, epsg: int = 32611, x0: float = 500_000.0,
                          y0: float = 4_000_000.0, size_px: int = 512, seed: int = 0, cloud_cover: float = 5.0,
                          datetime: str = "2020-07-01T18:30:00Z", scl_cloud_box: tuple | None = None,
                          nodata_cols_from: int | None = None, bands: tuple[str, ...] = ("B04", "B08"),
                          fill: int | None = None) -> Path:
    """A small scene at 10 m with origin (x0, y0) (top-left, in ``epsg``): ``visual`` (seeded uint8 noise, or a
    constant ``fill``), the listed 10 m bands (uint16), and ``SCL`` at 20 m (4 = vegetation; 9 = cloud inside
    ``scl_cloud_box`` = (col0, row0, col1, row1) in 10 m pixels). ``nodata_cols_from`` makes columns from there on
    nodata (a swath edge). Returns the scene folder."""
    d = Path(root) / item_id
    rng = np.random.default_rng(seed)
    t10 = from_origin(x0, y0, 10, 10)
    vis = np.full((3, size_px, size_px), fill, np.uint8) if fill is not None else \
        rng.integers(1, 256, (3, size_px, size_px), dtype=np.uint8)
    if nodata_cols_from is not None:
        vis[:, :, nodata_cols_from:] = 0
    write_cog(d / "visual.tif", vis, epsg, t10, nodata=0)
    for k, b in enumerate(bands):
        arr = (vis[k % 3].astype(np.uint16) * 16 + 1000 + k)
        arr[vis[k % 3] == 0] = 0
        write_cog(d / f"{b}.tif", arr[None], epsg, t10, nodata=0)
    scl = np.full((1, size_px // 2, size_px // 2), 4, np.uint8)
    if scl_cloud_box is not None:
        c0, r0, c1, r1 = (v // 2 for v in scl_cloud_box)
        scl[0, r0:r1, c0:c1] = 9
    if nodata_cols_from is not None:
        scl[0, :, nodata_cols_from // 2:] = 0
    write_cog(d / "SCL.tif", scl, epsg, from_origin(x0, y0, 20, 20), nodata=0)
    write_properties(d, datetime, cloud_cover, epsg, mgrs_tile=f"{epsg % 100:02d}SYN")
    return d


def write_real_chip_scenes(src_dir: str | Path, root: str | Path, names: list[str] | None = None,
                           cloud_cover: float = 5.0) -> list[Path]:
    """Warp the real California chips (EPSG:4326, 20 m) to UTM at 10 m as PC stores them, one scene per chip.

    ``visual`` = TCI_R, TCI_G, TCI_B as uint8 (1..255; 0 is nodata), ``B08`` = B8 and ``B12`` = B12 (20 m) as
    uint16, ``SCL`` all 4 (vegetation) at 20 m. The item datetime is the file's fire date + 15 days (the chips are
    a median of the 30 days after containment). Returns the scene folders.
    """
    src_dir, root = Path(src_dir), Path(root)
    out = []
    for f in sorted(src_dir.glob("*.tif")):
        if names and f.stem not in names:
            continue
        with rasterio.open(f) as src:
            lon = (src.bounds.left + src.bounds.right) / 2
            lat = (src.bounds.bottom + src.bounds.top) / 2
            epsg = utm_epsg(lon, lat)
            dst_crs = f"EPSG:{epsg}"
            tr10, w10, h10 = calculate_default_transform(src.crs, dst_crs, src.width, src.height, *src.bounds,
                                                         resolution=10)
            tr10 = from_origin(np.floor(tr10.c / 20) * 20, np.ceil(tr10.f / 20) * 20, 10, 10)  # 20 m aligned
            data = src.read().astype(np.float32)
            data = np.nan_to_num(data, nan=0.0)

            def warp(band: int, tr, w, h, data=data, src=src, dst_crs=dst_crs) -> np.ndarray:
                dst = np.zeros((h, w), np.float32)
                reproject(data[band], dst, src_transform=src.transform, src_crs=src.crs, dst_transform=tr,
                          dst_crs=dst_crs, resampling=Resampling.bilinear, src_nodata=None, dst_nodata=0)
                return dst

            vis = np.stack([np.clip(np.rint(warp(b, tr10, w10, h10)), 0, 255) for b in range(3)]).astype(np.uint8)
            inside = np.zeros((h10, w10), np.float32)
            reproject(np.ones((src.height, src.width), np.float32), inside, src_transform=src.transform,
                      src_crs=src.crs, dst_transform=tr10, dst_crs=dst_crs, resampling=Resampling.nearest,
                      dst_nodata=0)
            vis = np.where(inside[None] > 0, np.maximum(vis, 1), 0).astype(np.uint8)
            b08 = np.where(inside > 0, np.clip(np.rint(warp(3, tr10, w10, h10)), 1, 65535), 0).astype(np.uint16)
            tr20 = from_origin(tr10.c, tr10.f, 20, 20)
            w20, h20 = w10 // 2, h10 // 2
            b12 = np.clip(np.rint(warp(4, tr20, w20, h20)), 0, 65535).astype(np.uint16)
            scl = np.where(b12 > 0, 4, 0).astype(np.uint8)
        stem = f.stem.upper().replace("_", "")
        fire_date = _dt.datetime.strptime(f.stem.rsplit("_", 1)[1], "%Y%m%d") + _dt.timedelta(days=15)
        item_id = f"S2X_MSIL2A_{fire_date:%Y%m%d}T183921_R027_T{epsg % 100:02d}S{stem[:3]}_{fire_date:%Y%m%d}T000000"
        d = root / item_id
        write_cog(d / "visual.tif", vis, epsg, tr10, nodata=0)
        write_cog(d / "B08.tif", b08[None], epsg, tr10, nodata=0)
        write_cog(d / "B12.tif", b12[None], epsg, tr20, nodata=0)
        write_cog(d / "SCL.tif", scl[None], epsg, tr20, nodata=0)
        write_properties(d, f"{fire_date:%Y-%m-%d}T18:39:21Z", cloud_cover, epsg, mgrs_tile=f"{epsg % 100:02d}S",
                         **{"geoprom3e:source_chip": f.name, "geoprom3e:center": [lon, lat]})
        out.append(d)
    return out


def scene_lonlat(scene_dir: str | Path, cols, rows, asset: str = "visual") -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) of pixel corners ``(cols, rows)`` of a scene's asset (a chip centred there has its window start
    exactly ``chip_size / 2`` pixels up and left, which makes direct-read comparisons exact)."""
    from pyproj import Transformer

    with rasterio.open(Path(scene_dir) / f"{asset}.tif") as ds:
        xs, ys = ds.transform @ (np.asarray(cols, float), np.asarray(rows, float))
        lon, lat = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    return np.asarray(lat, float), np.asarray(lon, float)
