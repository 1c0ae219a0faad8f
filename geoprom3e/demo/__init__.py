"""The offline demo: a synthetic world and the whole chain run on it (``geoprom3e demo``)."""

from geoprom3e.demo.run import DemoResult, run_demo
from geoprom3e.demo.world import DemoWorld

__all__ = ["DemoResult", "DemoWorld", "run_demo"]
