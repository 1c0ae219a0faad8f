"""What to fetch: the frozen :class:`ImageryRequest` (STAC endpoint, scene filter, assets, chip geometry, selection)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from geoprom3e.errors import ConfigError

PLANETARY_COMPUTER_STAC = "https://planetarycomputer.microsoft.com/api/stac/v1"
SELECTIONS = ("least-cloudy", "median")
SIGNING_MODES = ("auto", "always", "never")
# Sentinel-2 scene classification (SCL) classes counted as cloud: 3 cloud shadow, 8/9 cloud medium/high, 10 cirrus.
SCL_CLOUD_CLASSES = (3, 8, 9, 10)


@dataclass(frozen=True)
class ImageryRequest:
    """Which Sentinel-2 scenes to search and how to cut one chip per cell from them.

    Defaults match what the TaxaBind satellite encoder saw: RGB (the ``visual`` true-colour product), 2020,
    growing season, low cloud, 256 px chips at 10 m (2.56 km), from Microsoft Planetary Computer.
    """

    stac_url: str = PLANETARY_COMPUTER_STAC
    """STAC API root URL, or a static catalogue (``file:///path/catalog.json`` or a plain path to one)."""
    collection: str = "sentinel-2-l2a"
    """STAC collection id to search."""
    datetime: str = "2020-05-01/2020-09-30"
    """Date window ``START/END`` (ISO dates or datetimes, inclusive)."""
    max_cloud: float = 20.0
    """Scene-level cloud limit in percent: only items with ``eo:cloud_cover`` below it are searched (0–100]."""
    assets: tuple[str, ...] = ("visual",)
    """Asset keys to read, in band order: ``("visual",)`` (RGB uint8) or bands, e.g. ``("B04", "B03", "B02")``."""
    chip_size: int = 256
    """Chip width and height in pixels."""
    resolution: float = 10.0
    """Chip pixel size in the item's own CRS units (metres for Sentinel-2's UTM)."""
    selection: str = "least-cloudy"
    """``least-cloudy``: the least-cloudy scene whose chip passes the SCL check, else the next one;
    ``median``: the per-pixel median of the ``median_k`` least-cloudy scenes (costs ``median_k`` reads)."""
    median_k: int = 3
    """Scenes combined per chip when ``selection == "median"``."""
    scl_asset: str | None = "SCL"
    """Scene-classification asset used to measure cloud inside each chip; ``None`` skips the check."""
    max_chip_cloud: float = 0.1
    """Largest fraction of cloud/shadow/cirrus SCL pixels inside a chip before the next scene is tried."""
    max_scenes_per_cell: int = 4
    """Scenes tried per cell (SCL fallback, edge mosaicking) before giving up."""
    signing: str = "auto"
    """``auto``: sign Azure blob hrefs with ``planetary_computer`` right before each read; ``always``: sign every
    http href through the token endpoint (``PC_SDK_SAS_URL``); ``never``."""
    page_limit: int = 1000
    """Items per search page (one search per block of cells, never one per cell)."""
    allow_hosts: tuple[str, ...] = field(default=(), compare=False)
    """Hosts asset hrefs may name besides the STAC API's own host and the signing provider's storage hosts
    (``*.blob.core.windows.net``): exact names or ``*.domain`` patterns (``--allow-host``). Pixels do not depend
    on it, so a store or cache built under another allow-list still matches."""
    allow_local_dirs: tuple[str, ...] = field(default=(), compare=False)
    """Folders local asset files may lie in besides a local catalogue's own folder tree (``--allow-local-dir``);
    a remote catalogue never opens local files."""

    def __post_init__(self) -> None:
        if not isinstance(self.assets, tuple):
            object.__setattr__(self, "assets", tuple(self.assets))
        if isinstance(self.allow_hosts, str) or isinstance(self.allow_local_dirs, str):
            raise ConfigError("allow_hosts and allow_local_dirs take a list of names, not one string")
        hosts = tuple(str(h).strip().lower() for h in self.allow_hosts)
        bad = [h for h in hosts if not h or "/" in h or ":" in h]
        if bad:
            raise ConfigError(f"allowed host {bad[0]!r} is not a host name: give e.g. data.example.org or "
                              "*.example.org (no scheme, port or path)")
        object.__setattr__(self, "allow_hosts", hosts)
        object.__setattr__(self, "allow_local_dirs",
                           tuple(str(Path(d).expanduser().resolve()) for d in self.allow_local_dirs))
        if not self.stac_url:
            raise ConfigError("stac_url is empty: give a STAC API URL or a path to a static catalog.json")
        object.__setattr__(self, "stac_url", normalize_stac_url(self.stac_url))
        if not self.collection:
            raise ConfigError("collection is empty: e.g. --collection sentinel-2-l2a")
        parse_datetime_window(self.datetime)
        if not (0 < float(self.max_cloud) <= 100):
            raise ConfigError(f"max_cloud = {self.max_cloud!r} is out of range: give a percentage in (0, 100]")
        if not self.assets or any(not a for a in self.assets):
            raise ConfigError(f"assets = {self.assets!r}: give at least one asset key, e.g. visual or B04,B03,B02")
        if "visual" in self.assets and len(self.assets) > 1:
            raise ConfigError(f"assets = {self.assets!r}: 'visual' is already RGB; use it alone or list bands")
        if not (16 <= int(self.chip_size) <= 4096):
            raise ConfigError(f"chip_size = {self.chip_size!r} px is out of range: use 16..4096 (default 256)")
        if not (self.resolution > 0):
            raise ConfigError(f"resolution = {self.resolution!r} must be > 0 (metres, default 10)")
        if self.selection not in SELECTIONS:
            raise ConfigError(f"selection = {self.selection!r} is unknown: choose one of {', '.join(SELECTIONS)}")
        if not (1 <= int(self.median_k) <= 32):
            raise ConfigError(f"median_k = {self.median_k!r} is out of range: use 1..32")
        if not (0 <= float(self.max_chip_cloud) <= 1):
            raise ConfigError(f"max_chip_cloud = {self.max_chip_cloud!r} must be a fraction in [0, 1]")
        if not (1 <= int(self.max_scenes_per_cell) <= 64):
            raise ConfigError(f"max_scenes_per_cell = {self.max_scenes_per_cell!r} is out of range: use 1..64")
        if self.signing not in SIGNING_MODES:
            raise ConfigError(f"signing = {self.signing!r} is unknown: choose one of {', '.join(SIGNING_MODES)}")
        if not (1 <= int(self.page_limit) <= 10000):
            raise ConfigError(f"page_limit = {self.page_limit!r} is out of range: use 1..10000")

    # -- derived ---------------------------------------------------------------------------------------------
    @property
    def band_names(self) -> tuple[str, ...]:
        """Names of the chip bands in order (``red, green, blue`` for ``visual``)."""
        return ("red", "green", "blue") if self.assets == ("visual",) else self.assets

    @property
    def dtype(self) -> str:
        """Chip dtype: ``uint8`` for ``visual``, else ``uint16`` (Sentinel-2 L2A digital numbers)."""
        return "uint8" if self.assets == ("visual",) else "uint16"

    @property
    def chip_extent_m(self) -> float:
        """Chip width in CRS units."""
        return self.chip_size * self.resolution

    def to_json(self) -> str:
        """Stable JSON form, stored with every chip store so a resume can check it was built the same way."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ImageryRequest:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        d["assets"] = tuple(d["assets"])
        for k in ("allow_hosts", "allow_local_dirs"):
            d[k] = tuple(d.get(k, ()))
        return cls(**d)

    def replace(self, **changes) -> ImageryRequest:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def normalize_stac_url(url: str) -> str:
    """An API URL unchanged; a static catalogue (``file://...``, a path, a folder) as an absolute catalog.json path,
    so the same catalogue always gives the same request (and a store resumes from any working folder)."""
    u = urlparse(url)
    if u.scheme not in ("", "file") and not (len(u.scheme) == 1 and url[1:3] in (":\\", ":/")):
        return url
    p = Path(unquote(u.path) if u.scheme == "file" else url).expanduser()
    p = p / "catalog.json" if p.is_dir() else p
    return str(p.resolve())


def _parse_instant(text: str, end: bool) -> _dt.datetime:
    t = text.strip()
    if t in ("", ".."):
        return _dt.datetime.max.replace(tzinfo=_dt.timezone.utc) if end else _dt.datetime.min.replace(
            tzinfo=_dt.timezone.utc)
    try:
        if len(t) == 10:
            d = _dt.date.fromisoformat(t)
            v = _dt.datetime(d.year, d.month, d.day, tzinfo=_dt.timezone.utc)
            return v + _dt.timedelta(days=1, microseconds=-1) if end else v
        v = _dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"datetime {text!r} is not an ISO date: use e.g. 2020-05-01/2020-09-30") from None
    return v if v.tzinfo else v.replace(tzinfo=_dt.timezone.utc)


def parse_datetime_window(window: str) -> tuple[_dt.datetime, _dt.datetime]:
    """``"A/B"`` -> (start, end) as aware UTC datetimes (``..`` is open); raises :class:`ConfigError` if malformed."""
    if not isinstance(window, str) or window.count("/") != 1:
        raise ConfigError(f"datetime window {window!r} is malformed: use START/END, e.g. 2020-05-01/2020-09-30")
    a, b = window.split("/")
    start, end = _parse_instant(a, end=False), _parse_instant(b, end=True)
    if start > end:
        raise ConfigError(f"datetime window {window!r} ends before it starts: swap the dates")
    return start, end


def stac_datetime(window: str) -> str:
    """The window as a STAC API ``datetime`` parameter (RFC 3339 instants, ``..`` for open ends)."""
    start, end = parse_datetime_window(window)

    def fmt(v: _dt.datetime, is_end: bool) -> str:
        if v.year in (1, 9999):
            return ".."
        return v.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if is_end else "%Y-%m-%dT%H:%M:%SZ")

    return f"{fmt(start, False)}/{fmt(end, True)}"
