"""One base exception for the package and one subclass per stage of the pipeline.

Every message says what was wrong, shows the bad value and says how to fix it. The CLI prints the
message on one line and exits with status 2; library callers catch :class:`GeoProm3eError`.
"""

from __future__ import annotations


class GeoProm3eError(Exception):
    """Base class of every error geoprom3e raises on purpose."""


class ConfigError(GeoProm3eError, ValueError):
    """A recipe, option or setting is unknown or out of range."""


class InputError(GeoProm3eError, ValueError):
    """Input data (embeddings, records, images, coordinates) is malformed."""


class CheckpointError(GeoProm3eError):
    """A model checkpoint is missing, unreadable or does not match the model."""


class WeightsNotFoundError(CheckpointError, FileNotFoundError):
    """Pretrained weights are not available locally and cannot be downloaded."""


class GridError(GeoProm3eError, ValueError):
    """A grid specification is unknown, inverted or too dense."""


class ObservationError(InputError):
    """An observation file cannot be read or has no usable records."""


class ImageryError(GeoProm3eError):
    """STAC search or chip reading failed in a way the run cannot recover from."""


class EncoderError(GeoProm3eError):
    """A modality encoder is unknown, cannot load, or was fed bad input."""


class CacheError(GeoProm3eError):
    """An embedding or chip cache is missing, corrupt, or was built with other settings."""


class OutputError(GeoProm3eError, OSError):
    """An output cannot be written (exists without --overwrite, unwritable folder, ...)."""


class TrainingError(GeoProm3eError):
    """Training data, recipe or resume state is inconsistent."""


class SchedulerError(GeoProm3eError):
    """A Dask scheduler cannot be reached or a distributed run failed."""
