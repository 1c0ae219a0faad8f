"""Frozen TaxaBind modality encoders behind one interface, their weights, and batched encoding.

>>> from geoprom3e.encoders import get_encoder
>>> loc = get_encoder("loc")                      # MVRL/ecogeo if present, else the geoclip wheel weights
>>> loc.embed([[38.9, -77.0], [34.05, -118.24]])  # (lat, lon), latitude FIRST → [2, 512]
"""

from geoprom3e.encoders.base import EncoderInfo, FrozenEncoder, resolve_device
from geoprom3e.encoders.batching import EncodeResult, encode_batches
from geoprom3e.encoders.env import COVARIATES, CovariateRasters, CovariateStats, open_covariates, scale_covariates
from geoprom3e.encoders.images import load_image
from geoprom3e.encoders.loc import geoclip_wheel_weights, validate_latlon
from geoprom3e.encoders.registry import EncoderSpec, encoder_spec, get_encoder, list_encoders
from geoprom3e.encoders.transforms import ImageTransform, chip_to_rgb_uint8, read_chip
from geoprom3e.encoders.weights import (
    WEIGHTS,
    WeightsReport,
    WeightsSpec,
    WeightsStatus,
    download_weights,
    find_weights,
    list_weights,
    resolve_weights,
    verify_weights,
)

__all__ = [
    "COVARIATES",
    "WEIGHTS",
    "CovariateRasters",
    "CovariateStats",
    "EncodeResult",
    "EncoderInfo",
    "EncoderSpec",
    "FrozenEncoder",
    "ImageTransform",
    "WeightsReport",
    "WeightsSpec",
    "WeightsStatus",
    "chip_to_rgb_uint8",
    "download_weights",
    "encode_batches",
    "encoder_spec",
    "find_weights",
    "geoclip_wheel_weights",
    "get_encoder",
    "list_encoders",
    "list_weights",
    "load_image",
    "open_covariates",
    "read_chip",
    "resolve_device",
    "resolve_weights",
    "scale_covariates",
    "validate_latlon",
    "verify_weights",
]
