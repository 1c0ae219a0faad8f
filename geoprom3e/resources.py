"""Files that ship with geoprom3e: grid presets, the contiguous-US boundaries, the demo and training recipes.

In an installed wheel they sit inside the package (``geoprom3e/data/``, copied from the repository's top-level
``grids/`` and ``recipes/`` at build time); in a checkout they are read from those folders directly.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from geoprom3e.errors import ConfigError

_KINDS = ("grids", "recipes")


def data_dir(kind: str) -> Path:
    """The folder holding the bundled ``grids`` or ``recipes`` (``$GEOPROM3E_GRIDS_DIR`` overrides grids)."""
    if kind not in _KINDS:
        raise ConfigError(f"unknown bundled folder {kind!r}: choose one of {', '.join(_KINDS)}")
    if kind == "grids" and os.environ.get("GEOPROM3E_GRIDS_DIR"):
        return Path(os.environ["GEOPROM3E_GRIDS_DIR"])
    packaged = Path(str(resources.files("geoprom3e"))) / "data" / kind
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[1] / kind
    if checkout.is_dir():
        return checkout
    raise ConfigError(f"geoprom3e's bundled {kind}/ folder is missing (looked in {packaged} and {checkout}): "
                      "reinstall the package (`pip install --force-reinstall geoprom3e`)")


def recipe_path(relative: str | Path) -> Path:
    """A bundled recipe, e.g. ``recipe_path("demo/demo.yaml")`` or ``recipe_path("recipes/train/demo.yaml")``."""
    rel = Path(relative)
    if rel.parts and rel.parts[0] == "recipes":
        rel = Path(*rel.parts[1:])
    return data_dir("recipes") / rel
