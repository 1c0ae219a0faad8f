"""Frozen TaxaBind modality encoders behind one interface, their weights, and batched encoding.

>>> from geoprom3e.encoders import get_encoder
>>> loc = get_encoder("loc")                      # MVRL/ecogeo if present, else the geoclip wheel weights
>>> loc.embed([[38.9, -77.0], [34.05, -118.24]])  # (lat, lon), latitude FIRST → [2, 512]

Every encoder has ``preprocess(raw)`` (CPU, picklable, runs in DataLoader workers), ``encode(batch)`` →
[B, 512] float32 L2-normalised, ``embed(raw)`` for both, and reports ``device``, ``dtype`` (bf16 autocast on a
GPU only) and ``preferred_batch_size``. :func:`encode_batches` embeds many inputs with worker processes, pinned
memory and per-item failure records.

Sources (``list_encoders()``):

* ``taxabind`` (default) — the published towers: image/text ``MVRL/taxabind-vit-b-16`` (open_clip, extra
  ``clip``), sat ``MVRL/ecosat`` (transformers CLIP vision), loc ``MVRL/ecogeo`` (GeoCLIP architecture),
  env ``MVRL/ecoclim`` (SINR; needs ``covariates=`` WorldClim 2.1 rasters), audio ``MVRL/ecosound`` (CLAP).
* ``geoclip`` (loc) — the pretrained GeoCLIP weights inside the PyPI ``geoclip`` wheel (``pip install --no-deps
  geoclip==1.3.0``); real weights, but not the TaxaBind fine-tune, so not in the ProM3E space.
  ``get_encoder("loc")`` falls back to it when ``MVRL/ecogeo`` is not at hand and says so in
  ``encoder.info.note`` and the log.
* ``hf-clip`` (image, text) — a transformers ``CLIPModel`` (or, image only, ``CLIPVisionModelWithProjection``)
  folder. Chosen so that the offline demo and the tests run on the plain CPU torch without torchvision /
  open_clip; the ``taxabind`` source also accepts such a folder as ``weights=``.

Weights are never downloaded implicitly: ``geoprom3e weights download`` (or ``download=True``) fetches them;
:mod:`geoprom3e.encoders.weights` documents the folder layouts searched. Small random-weight encoders in the
same layouts come from :mod:`geoprom3e.testing.encoders`.
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
