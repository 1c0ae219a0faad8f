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


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``../shared`` folder (real third-party data and reference fixtures)."""
    return shared_path()


@pytest.fixture(scope="session")
def prom3e_fixture_dir() -> Path:
    """Reference outputs of the published ProM3E implementation."""
    return shared_path("fixtures", "prom3e_reference")
