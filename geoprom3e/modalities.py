"""The six ProM3E modalities, in the order the published model indexes them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from geoprom3e.errors import ConfigError

MODALITIES: tuple[str, ...] = ("image", "sat", "loc", "env", "text", "audio")
"""Modality names; position i is projector/decoder index i in a ProM3E checkpoint."""

EMBED_DIM = 512
"""Width of every frozen TaxaBind encoder output and of every ProM3E input/output."""

_ALIASES = {"sound": "audio", "satellite": "sat", "location": "loc", "environment": "env", "photo": "image"}


def modality_index(name_or_index: str | int, num_modalities: int = len(MODALITIES)) -> int:
    """Index of a modality given its name (``"sat"``), an alias (``"sound"``) or an integer index."""
    if isinstance(name_or_index, bool):
        raise ConfigError(f"modality {name_or_index!r} is a bool; use a name ({', '.join(MODALITIES)}) or 0..5")
    if isinstance(name_or_index, int) or (hasattr(name_or_index, "__index__") and not isinstance(name_or_index, str)):
        i = int(name_or_index)
        if not 0 <= i < num_modalities:
            raise ConfigError(
                f"modality index {i} is out of range: use 0..{num_modalities - 1} "
                f"({', '.join(MODALITIES[:num_modalities])})"
            )
        return i
    key = str(name_or_index).strip().lower()
    if key.lstrip("-").isdigit():
        return modality_index(int(key), num_modalities)
    key = _ALIASES.get(key, key)
    if key in MODALITIES[:num_modalities]:
        return MODALITIES.index(key)
    raise ConfigError(
        f"unknown modality {name_or_index!r}: use one of {', '.join(MODALITIES[:num_modalities])} "
        f"or an index 0..{num_modalities - 1}"
    )


def parse_modalities(spec: str | Iterable[str | int], num_modalities: int = len(MODALITIES)) -> list[int]:
    """Parse ``"sat,loc,env"`` or a list of names/indices into indices, keeping the order given."""
    items: Sequence[str | int]
    if isinstance(spec, str):
        items = [s for s in (p.strip() for p in spec.split(",")) if s]
    else:
        items = list(spec)
    idx = [modality_index(s, num_modalities) for s in items]
    if not idx:
        raise ConfigError(
            f"the visible set is empty: name at least one modality ({', '.join(MODALITIES[:num_modalities])})"
        )
    if len(set(idx)) != len(idx):
        raise ConfigError(f"visible set {list(items)!r} repeats a modality: name each modality once")
    return idx
