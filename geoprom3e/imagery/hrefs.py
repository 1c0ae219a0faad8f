"""Which asset hrefs a run may open: http(s) on the STAC API's own host, the signing provider's storage hosts and
an allow-list; local files only from a local catalogue, inside its folder tree or an allowed folder.

A catalogue is data from elsewhere: an item whose href is ``file:///etc/passwd`` or names some other host must not
make the run read it. A refused href fails the cell (``refused: ...``); :func:`check_scenes` stops the run with one
line when every scene of a search is refused.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from geoprom3e.errors import ImageryError
from geoprom3e.imagery.request import ImageryRequest
from geoprom3e.imagery.signing import BLOB_DOMAIN

STORAGE_HOSTS = ("*" + BLOB_DOMAIN,)
"""Hosts the signing provider (Planetary Computer) stores assets on, allowed unless ``signing == "never"``."""


@dataclass(frozen=True)
class HrefPolicy:
    """The hosts and folders asset hrefs may name."""

    hosts: tuple[str, ...]
    """Host names (lower case), exact or ``*.domain`` patterns."""
    local_dirs: tuple[Path, ...]
    """Folders local files may lie in (empty for a remote catalogue: no local file is read)."""

    def refusal(self, href: str) -> str | None:
        """``None`` when ``href`` may be read, else a one-line reason naming it and the option that allows it."""
        u = urlparse(href)
        scheme = u.scheme.lower()
        if scheme in ("http", "https"):
            host = (u.hostname or "").lower()
            if any(fnmatch.fnmatchcase(host, p) for p in self.hosts):
                return None
            return (f"asset href {href[:200]!r} names host {host!r}, which is neither the STAC API's host nor an "
                    f"allowed one: pass --allow-host {host} (ImageryRequest.allow_hosts) if you trust it")
        local = scheme == "file" or scheme == "" or (len(scheme) == 1 and href[1:3] in (":\\", ":/"))
        if not local:
            return (f"asset href {href[:200]!r} has scheme {scheme!r}: only http(s) and, for a local catalogue, "
                    "local files are read")
        if not self.local_dirs:
            return (f"asset href {href[:200]!r} is a local file but the catalogue is remote: a remote catalogue "
                    "never opens local files")
        path = Path(os.path.realpath(unquote(u.path) if scheme == "file" else href))
        if any(path == d or d in path.parents for d in self.local_dirs):
            return None
        return (f"asset file {str(path)!r} lies outside the catalogue's folder {str(self.local_dirs[0])!r}: pass "
                f"--allow-local-dir {path.parent} (ImageryRequest.allow_local_dirs) if you trust it")


def href_policy(request: ImageryRequest) -> HrefPolicy:
    """The policy for ``request``: its STAC API host (or local catalogue folder), storage hosts, allow-lists."""
    from geoprom3e.imagery.search import catalog_path, is_static_catalog

    hosts = [h.lower() for h in request.allow_hosts]
    if request.signing != "never":
        hosts += STORAGE_HOSTS
    dirs: list[Path] = []
    if is_static_catalog(request.stac_url):
        dirs.append(Path(os.path.realpath(catalog_path(request.stac_url).parent)))
        dirs += [Path(os.path.realpath(d)) for d in request.allow_local_dirs]
    else:
        api_host = urlparse(request.stac_url).hostname
        if api_host:
            hosts.append(api_host.lower())
    return HrefPolicy(tuple(hosts), tuple(dirs))


def refused_scenes(policy: HrefPolicy, scenes, assets: tuple[str, ...]) -> dict[str, str]:
    """Scene id -> reason, for scenes with a refused href among ``assets``."""
    out = {}
    for s in scenes:
        for a in assets:
            href = s.hrefs.get(a)
            reason = policy.refusal(href) if href else None
            if reason:
                out[s.id] = reason
                break
    return out


def check_scenes(policy: HrefPolicy, scenes, assets: tuple[str, ...]) -> dict[str, str]:
    """:func:`refused_scenes`, raising :class:`ImageryError` with the first reason when every scene is refused."""
    refused = refused_scenes(policy, scenes, assets)
    if scenes and len(refused) == len(scenes):
        raise ImageryError(f"every scene found is refused: {next(iter(refused.values()))}")
    return refused
