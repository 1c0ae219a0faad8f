"""Fixtures for the imagery tests: COG file servers, scenes and catalogues (``pgstac_api``/``stack`` are in
``tests/conftest.py``, shared with the engine tests)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from geoprom3e.testing.cogs import write_real_chip_scenes, write_synthetic_scene
from geoprom3e.testing.faults import FaultConfig, FaultyFileServer
from geoprom3e.testing.stac import build_items, write_static_catalog
from tests.conftest import shared_path

REAL_CHIPS = ["CANAL_20240530", "CREEK_20240726", "LISA_20240616"]
LOOPBACK = ("127.0.0.1",)
"""``allow_hosts`` for a static catalogue whose hrefs point at a local file server (a local catalogue has no API
host, so http hosts must be allowed explicitly)."""


@pytest.fixture(scope="session")
def real_scenes(tmp_path_factory) -> Path:
    """Three real Sentinel-2 chips warped to UTM at 10 m, laid out as PC-style scenes (written at test time)."""
    src = shared_path("data", "sentinel2_l2a_chips_california_fires", "post_fire")
    root = tmp_path_factory.mktemp("real_scenes")
    write_real_chip_scenes(src, root, names=REAL_CHIPS)
    return root


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
