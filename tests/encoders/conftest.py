"""Small random-weight encoders saved in production layouts, shared by the encoder tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from geoprom3e.testing import encoders as factories


@pytest.fixture(scope="session")
def small_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    return {
        "sat": factories.save_small_sat(root / "sat"),
        "clip": factories.save_small_hf_clip(root / "clip"),
        "loc": factories.save_small_loc(root / "loc", prefix="location_encoder."),
        "env": factories.save_small_env(root / "env"),
        "audio": factories.save_small_audio(root / "audio"),
    }


@pytest.fixture(scope="session")
def open_clip_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("open_clip") is None:
        pytest.skip(
            "open_clip is not installed (it needs torchvision): `.ci/setup --dev` installs torch 2.14.1 + torchvision "
            "0.29.1 + open_clip_torch; in a CPU-only torch 2.13 venv these tests cannot run"
        )
    try:
        import open_clip  # noqa: F401
    except Exception as exc:  # torchvision/torch mismatch raises at import
        pytest.skip(f"open_clip does not import here ({type(exc).__name__}: {exc}); run `.ci/setup --dev`")
    return factories.save_small_open_clip(tmp_path_factory.mktemp("openclip") / "taxabind-vit-b-16")


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    from tests.conftest import shared_path

    return sorted(shared_path("data", "species_photos_open_license").glob("*.jpg"))


@pytest.fixture(scope="session")
def chips() -> list[Path]:
    from tests.conftest import shared_path

    return sorted(shared_path("data", "sentinel2_l2a_chips_california_fires", "post_fire").glob("*.tif"))
