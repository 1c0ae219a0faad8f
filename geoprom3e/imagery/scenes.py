"""Scenes found by a search, and their assignment to cells (done locally, never by searching per cell)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import shape


@dataclass(frozen=True)
class SceneItem:
    """The parts of one STAC item that chip reading needs; hrefs are kept unsigned."""

    id: str
    """STAC item id."""
    datetime: str
    """Acquisition time (ISO 8601, as the item gives it)."""
    cloud_cover: float
    """Scene-level ``eo:cloud_cover`` in percent (NaN when the item has none)."""
    footprint: object
    """Item geometry as a shapely geometry in lon/lat."""
    hrefs: dict[str, str] = field(hash=False)
    """Asset key -> unsigned href."""
    epsg: int | None = None
    """``proj:epsg`` (or ``proj:code``) of the item, when given."""
    mgrs_tile: str | None = None
    """``s2:mgrs_tile``, when given."""

    @classmethod
    def from_stac(cls, item: dict) -> SceneItem:
        """Build from a STAC item dict (hrefs are used as they are: absolute, unsigned)."""
        props = item.get("properties", {})
        epsg = props.get("proj:epsg")
        if epsg is None and str(props.get("proj:code", "")).upper().startswith("EPSG:"):
            epsg = int(str(props["proj:code"]).split(":")[1])
        geom = item.get("geometry")
        if geom:
            footprint = shape(geom)
        else:
            w, s, e, n = item["bbox"][:4]
            footprint = shapely.box(w, s, e, n)
        cc = props.get("eo:cloud_cover")
        return cls(
            id=str(item["id"]),
            datetime=str(props.get("datetime") or props.get("start_datetime") or ""),
            cloud_cover=float(cc) if cc is not None else float("nan"),
            footprint=footprint,
            hrefs={k: a["href"] for k, a in item.get("assets", {}).items() if "href" in a},
            epsg=int(epsg) if epsg is not None else None,
            mgrs_tile=props.get("s2:mgrs_tile"),
        )

    @property
    def when(self) -> _dt.datetime | None:
        """Acquisition time as an aware datetime (``None`` when missing)."""
        if not self.datetime:
            return None
        v = _dt.datetime.fromisoformat(self.datetime.replace("Z", "+00:00"))
        return v if v.tzinfo else v.replace(tzinfo=_dt.timezone.utc)


def sort_scenes(scenes: list[SceneItem]) -> list[SceneItem]:
    """Least cloudy first (missing cloud cover last), then newest, then id, so the order never depends on the server."""
    def key(s: SceneItem):
        cc = s.cloud_cover if np.isfinite(s.cloud_cover) else 1e9
        return (cc, -(s.when.timestamp() if s.when else 0.0), s.id)

    return sorted(scenes, key=key)


def assign_scenes(scenes: list[SceneItem], lats: np.ndarray, lons: np.ndarray, limit: int) -> list[list[int]]:
    """For each cell, indices into ``scenes`` (already sorted) of up to ``limit`` scenes whose footprint holds the
    cell centre, in order. One vectorised point-in-polygon test per scene."""
    out: list[list[int]] = [[] for _ in range(len(lats))]
    for j, s in enumerate(scenes):
        shapely.prepare(s.footprint)
        inside = np.nonzero(shapely.contains_xy(s.footprint, np.asarray(lons, float), np.asarray(lats, float)))[0]
        for i in inside:
            if len(out[i]) < limit:
                out[i].append(j)
    return out


def cells_bbox(lats: np.ndarray, lons: np.ndarray, pad_deg: float) -> tuple[float, float, float, float]:
    """(W, S, E, N) around the cells, padded by ``pad_deg`` so chips near the edge still find their scenes."""
    return (float(np.min(lons)) - pad_deg, float(np.min(lats)) - pad_deg,
            float(np.max(lons)) + pad_deg, float(np.max(lats)) + pad_deg)
