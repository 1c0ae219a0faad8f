"""geoprom3e: maps of species, uncertainty and diversity from the ProM3E multimodal ecology model."""

from geoprom3e._version import __version__
from geoprom3e.errors import GeoProm3eError
from geoprom3e.modalities import MODALITIES

__all__ = ["MODALITIES", "GeoProm3eError", "__version__"]
