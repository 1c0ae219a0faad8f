"""Fixtures for the imagery tests: a session pgstac STAC API, COG file servers, scenes and catalogues."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from geoprom3e.testing.cogs import write_real_chip_scenes, write_synthetic_scene
from geoprom3e.testing.faults import FaultConfig, FaultyFileServer
from geoprom3e.testing.pgstac import PgStacServer, pgstac_available
from geoprom3e.testing.stac import LocalStacStack, build_items, write_static_catalog
from tests.conftest import shared_path

REAL_CHIPS = ["CANAL_20240530", "CREEK_20240726", "LISA_20240616"]


@pytest.fixture(scope="session")
def pgstac_api():
    """One real pgstac STAC API for the whole session (collections are unique per test)."""
    reason = pgstac_available()
    if reason:
        pytest.skip(f"local STAC API unavailable: {reason}")
    with PgStacServer() as api:
        yield api


@pytest.fixture(scope="session")
def real_scenes(tmp_path_factory) -> Path:
    """Three real Sentinel-2 chips warped to UTM at 10 m, laid out as PC-style scenes (written at test time)."""
    src = shared_path("data", "sentinel2_l2a_chips_california_fires", "post_fire")
    root = tmp_path_factory.mktemp("real_scenes")
    write_real_chip_scenes(src, root, names=REAL_CHIPS)
    return root


@pytest.fixture
def stack(pgstac_api):
    """Factory: ``stack(root, faults)`` -> a started LocalStacStack with its own collection on the shared API."""
    started = []

    def make(root: Path, faults: FaultConfig | None = None) -> LocalStacStack:
        s = LocalStacStack(root, faults, collection=f"s2-{uuid.uuid4().hex[:8]}", api=pgstac_api).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def served_catalog():
    """Factory: ``served_catalog(root, faults)`` -> (FaultyFileServer, catalog.json) with hrefs on the server."""
    servers = []

    def make(root: Path, faults: FaultConfig | None = None, collection: str = "sentinel-2-l2a"):
        fs = FaultyFileServer(root, faults).start()
        servers.append(fs)
        cat = write_static_catalog(build_items(root, fs.url, collection), root.parent / f"cat-{uuid.uuid4().hex[:6]}",
                                   collection)
        return fs, cat

    yield make
    for fs in servers:
        fs.stop()


def synthetic(root: Path, name: str, **kw) -> Path:
    """A synthetic scene with no extra bands unless asked (fast to write)."""
    kw.setdefault("bands", ())
    return write_synthetic_scene(root, name, **kw)
