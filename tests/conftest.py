"""Fixtures shared by every test area."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO.parent / "shared").resolve()


def shared_path(*parts: str) -> Path:
    """Path inside ``../shared``; skips the calling test with a clear reason when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (the project's shared data folder beside the repo; CI has it, a user's clone may not)")
    return p


@pytest.fixture(autouse=True)
def _fresh_cog_header_cache():
    """Each test starts with an empty process-wide COG header cache: test servers reuse ports and file names, so an
    href can name other bytes in the next test (in real use an href's header never changes)."""
    yield
    import sys

    cog = sys.modules.get("geoprom3e.imagery.cog")
    if cog is not None:
        cog.HEADERS.clear()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``../shared`` folder (real third-party data and reference fixtures)."""
    return shared_path()


@pytest.fixture(scope="session")
def prom3e_fixture_dir() -> Path:
    """Reference outputs of the published ProM3E implementation."""
    return shared_path("fixtures", "prom3e_reference")


@pytest.fixture(scope="session")
def pgstac_api():
    """One real pgstac STAC API on 127.0.0.1 for the whole session (each test gets its own collection)."""
    from geoprom3e.testing.pgstac import PgStacServer, pgstac_available

    reason = pgstac_available()
    if reason:
        pytest.skip(f"local STAC API unavailable: {reason}")
    with PgStacServer() as api:
        yield api


@pytest.fixture
def stack(pgstac_api):
    """Factory: ``stack(root, faults)`` -> a started LocalStacStack with its own collection on the shared API."""
    import uuid

    from geoprom3e.testing.stac import LocalStacStack

    started = []

    def make(root, faults=None):
        s = LocalStacStack(root, faults, collection=f"s2-{uuid.uuid4().hex[:8]}", api=pgstac_api).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under ``GEOPROM3E_CI_STRICT=1`` (set by ``.ci/run``) a skip is a failure, GPU skips aside.

    A user's clone may lack ``../shared``, PostgreSQL or open_clip and then skips with a reason; CI installs
    and has all of them, so a skip there means the setup broke and must not pass silently.
    """
    import os

    outcome = yield
    rep = outcome.get_result()
    if not (rep.skipped and os.environ.get("GEOPROM3E_CI_STRICT") == "1"):
        return
    reason = str(rep.longrepr[2] if isinstance(rep.longrepr, tuple) else rep.longrepr)
    if "GPU" in reason or item.get_closest_marker("gpu"):
        return
    rep.outcome = "failed"
    rep.longrepr = f"skipped in strict CI mode (GEOPROM3E_CI_STRICT=1): {reason}"
