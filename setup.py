"""Build hook: copy the top-level ``grids/`` and ``recipes/`` folders into the wheel as ``geoprom3e/data/``.

``grids/`` and ``recipes/`` stay the one source of truth in the repository; an installed package reads its copy
with ``importlib.resources`` (``geoprom3e.resources``), a checkout reads the folders themselves.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: (source folder, glob patterns) copied into geoprom3e/data/<folder>
BUNDLED = {"grids": ("*.json", "*.geojson", "*.md"), "recipes": ("demo/*.yaml", "train/*.yaml", "*.md")}


class BuildPyWithData(build_py):
    """``build_py`` that also bundles the grid presets, boundaries and recipes."""

    def run(self) -> None:  # noqa: D102
        super().run()
        for folder, patterns in BUNDLED.items():
            for pattern in patterns:
                for src in sorted((ROOT / folder).glob(pattern)):
                    dst = Path(self.build_lib) / "geoprom3e" / "data" / folder / src.relative_to(ROOT / folder)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildPyWithData})
