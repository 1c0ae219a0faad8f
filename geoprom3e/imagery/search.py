"""Item sources: a STAC API (pystac-client, CQL2-JSON filter + sortby, large pages) or a static catalogue on disk.

Both answer ``search(bbox)`` for one block of cells with the same semantics (collection, datetime window, cloud
limit, least cloudy first). Never call it once per cell: search once per block and assign items locally
(:func:`geoprom3e.imagery.scenes.assign_scenes`).
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import numpy as np
import shapely

from geoprom3e.errors import ConfigError, ImageryError
from geoprom3e.imagery.request import ImageryRequest, normalize_stac_url, parse_datetime_window, stac_datetime
from geoprom3e.imagery.scenes import SceneItem, sort_scenes

log = logging.getLogger(__name__)

RETRY_STATUS = (429, 500, 502, 503, 504)


class ItemSource(Protocol):
    """Anything that finds scenes for a bounding box under an :class:`ImageryRequest`."""

    requests_made: int
    """Search requests (pages) made so far."""

    def search(self, bbox: tuple[float, float, float, float]) -> list[SceneItem]:
        """Scenes intersecting ``bbox`` (W, S, E, N) that pass the request's filters, least cloudy first."""
        ...


def cloud_filter(max_cloud: float) -> dict:
    """The CQL2-JSON filter that keeps items with ``eo:cloud_cover`` below ``max_cloud``."""
    return {"op": "<", "args": [{"property": "eo:cloud_cover"}, float(max_cloud)]}


def search_parameters(request: ImageryRequest, bbox: tuple[float, float, float, float]) -> dict:
    """Keyword arguments for ``pystac_client.Client.search`` for one block (exposed so tests can check them)."""
    return {
        "collections": [request.collection],
        "bbox": [float(v) for v in bbox],
        "datetime": stac_datetime(request.datetime),
        "filter": cloud_filter(request.max_cloud),
        "filter_lang": "cql2-json",
        "sortby": [{"field": "eo:cloud_cover", "direction": "asc"}],
        "limit": int(request.page_limit),
    }


def _check_assets(request: ImageryRequest, scenes: list[SceneItem], where: str) -> None:
    if not scenes:
        return
    wanted = list(request.assets) + ([request.scl_asset] if request.scl_asset else [])
    have = scenes[0].hrefs
    missing = [a for a in wanted if a not in have]
    if missing:
        if request.scl_asset in missing and len(missing) == 1:
            raise ConfigError(f"items of {where} have no {request.scl_asset!r} asset for the cloud check: "
                              f"use --no-scl-check or one of {', '.join(sorted(have))}")
        raise ConfigError(f"asset(s) {', '.join(missing)} not in the items of {where}: "
                          f"choose from {', '.join(sorted(have))}")


def _local_filter(request: ImageryRequest, scenes: list[SceneItem]) -> tuple[list[SceneItem], int]:
    """Drop scenes that break the request's cloud/date limits (a server that ignored the filter)."""
    start, end = parse_datetime_window(request.datetime)
    keep, dropped = [], 0
    for s in scenes:
        ok = not (s.cloud_cover >= request.max_cloud)  # NaN cloud cover passes, as on the server
        w = s.when
        ok = ok and (w is None or start <= w <= end)
        keep.append(s) if ok else None
        dropped += not ok
    return keep, dropped


class StacApiSource:
    """Search a STAC API with pystac-client, retrying 429/5xx with backoff."""

    def __init__(self, request: ImageryRequest, retries: int = 5, backoff_s: float = 1.0, timeout_s: float = 60.0):
        import pystac_client
        import urllib3
        from pystac_client.stac_api_io import StacApiIO

        self.request = request
        self.requests_made = 0
        self.ignored_filter_items = 0
        self._lock = threading.Lock()
        self._assets_checked = False
        retry = urllib3.Retry(total=retries, connect=min(retries, 2), backoff_factor=backoff_s,
                              status_forcelist=list(RETRY_STATUS), allowed_methods=False)
        io = StacApiIO(max_retries=retry, timeout=timeout_s)
        try:
            self.client = pystac_client.Client.open(request.stac_url, stac_io=io)
        except Exception as exc:  # connection refused, DNS, not a STAC API, ...
            first = str(exc).splitlines()[0][:160] if str(exc) else ""
            raise ImageryError(f"cannot open STAC API {request.stac_url!r} ({type(exc).__name__}: {first}): "
                               "check --stac-url and the network") from None
        self.requests_made += 1
        self.client.add_conforms_to("SORT")  # pgstac sorts but does not advertise it; we sort locally anyway
        self._check_collection()

    def _check_collection(self) -> None:
        try:
            ids = [c.id for c in self.client.get_collections()]
        except Exception as exc:
            raise ImageryError(f"cannot list collections at {self.request.stac_url!r}: {exc}") from None
        self.requests_made += 1
        if self.request.collection not in ids:
            raise ConfigError(f"collection {self.request.collection!r} not found at {self.request.stac_url}: "
                              f"it has {', '.join(sorted(ids)) or 'none'}")

    def search(self, bbox: tuple[float, float, float, float]) -> list[SceneItem]:
        """One search (paged) for the block's bbox; items that break the filter are dropped and counted."""
        params = search_parameters(self.request, bbox)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                search = self.client.search(**params)
                dicts = []
                pages = 0
                for page in search.pages_as_dicts():
                    pages += 1
                    dicts.extend(page.get("features", []))
        except Exception as exc:
            raise ImageryError(f"STAC search at {self.request.stac_url} failed for bbox {bbox}: "
                               f"{type(exc).__name__}: {str(exc)[:200]}") from exc
        scenes = [SceneItem.from_stac(d) for d in dicts]
        scenes, dropped = _local_filter(self.request, scenes)
        with self._lock:
            self.requests_made += pages
            if dropped:
                if not self.ignored_filter_items:
                    log.warning("STAC server %s returned %d item(s) outside the cloud/date filter: it ignores "
                                "filters; dropped locally", self.request.stac_url, dropped)
                self.ignored_filter_items += dropped
            if not self._assets_checked and scenes:
                _check_assets(self.request, scenes, f"collection {self.request.collection!r}")
                self._assets_checked = True
        return sort_scenes(scenes)


class StaticCatalogSource:
    """Items of one collection in a static STAC catalogue (catalog.json -> collection -> items), read with pystac."""

    def __init__(self, request: ImageryRequest):
        import pystac

        self.request = request
        self.requests_made = 0
        path = catalog_path(request.stac_url)
        if not path.exists():
            raise ImageryError(f"static STAC catalogue {str(path)!r} does not exist: check --stac-url")
        try:
            root = pystac.read_file(str(path))
        except Exception as exc:
            raise ImageryError(f"cannot read static STAC catalogue {str(path)!r}: {exc}") from None
        if isinstance(root, pystac.Collection) and root.id == request.collection:
            coll = root
        else:
            colls = {c.id: c for c in root.get_all_collections()} if hasattr(root, "get_all_collections") else {}
            if request.collection not in colls:
                raise ConfigError(f"collection {request.collection!r} not in catalogue {str(path)!r}: "
                                  f"it has {', '.join(sorted(colls)) or 'none'}")
            coll = colls[request.collection]
        items = []
        for it in coll.get_items(recursive=True):
            it.make_asset_hrefs_absolute()
            items.append(SceneItem.from_stac(it.to_dict(include_self_link=False, transform_hrefs=False)))
        items, _ = _local_filter(request, items)
        self._scenes = sort_scenes(items)
        _check_assets(request, self._scenes, f"collection {request.collection!r} in {str(path)!r}")
        log.info("static catalogue %s: %d item(s) pass the filters", path, len(self._scenes))

    def search(self, bbox: tuple[float, float, float, float]) -> list[SceneItem]:
        """Scenes whose footprint intersects ``bbox`` (already filtered and sorted)."""
        self.requests_made += 1
        box = shapely.box(*bbox)
        hits = np.array([s.footprint.intersects(box) for s in self._scenes], bool)
        return [s for s, h in zip(self._scenes, hits) if h]


def is_static_catalog(url: str) -> bool:
    """True for ``file://`` URLs and plain paths (a static catalogue), False for ``http(s)://`` (an API)."""
    scheme = urlparse(url).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and url[1:3] in (":\\", ":/"))  # Windows drive letters


def catalog_path(url: str) -> Path:
    """Local path of a static catalogue URL; a folder means its ``catalog.json``."""
    return Path(normalize_stac_url(url))


def open_source(request: ImageryRequest, **kwargs) -> ItemSource:
    """The item source for ``request.stac_url``: a static catalogue for paths/``file://``, else a STAC API."""
    if is_static_catalog(request.stac_url):
        return StaticCatalogSource(request)
    return StacApiSource(request, **kwargs)
