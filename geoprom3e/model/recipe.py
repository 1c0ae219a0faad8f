"""Training recipes: published defaults, a YAML file on top, then ``key=value`` overrides.

A recipe has four sections: ``model`` (:class:`~geoprom3e.model.config.ProM3EConfig`), ``data``
(:class:`DataSpec`), ``masking`` (:class:`MaskingSpec`) and ``train`` (:class:`TrainSpec`). Unknown keys and
out-of-range values raise :class:`~geoprom3e.errors.ConfigError` naming the allowed keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from geoprom3e.errors import ConfigError
from geoprom3e.model.config import ProM3EConfig
from geoprom3e.model.masking import get_strategy

SCORES = ("train-target-loss", "inverse-loss", "top1")
"""Per-modality scores s_m for dynamic strategies (MIAM, OPM):

* ``train-target-loss`` (default; the MIAM paper's self-supervised recipe, appendix A.4.4): modality m is
  scored by its reconstruction loss *as the target*, on the training set, during training: L_m is the mean,
  over the epoch's batches, of the contrastive loss of the rows in which m was present and masked (hidden);
  when m was never hidden in the epoch (OPM before its first drop), of every row in which m was a target.
  Transform: ``s_m = exp(−L_m)`` (the geometric-mean probability the InfoNCE gives the right row; in (0, 1],
  higher is better, like the accuracies MIAM is defined on);
* ``inverse-loss`` and ``top1`` (the supervised reading, kept as options): m as the only *input* on the
  validation rows; 1 / the reconstruction loss of the other modalities, or their top-1 retrieval."""

SOURCE_SAMPLING = ("published", "pooled")
"""How batches are drawn when ``data.path`` lists several sources (see :class:`DataSpec`)."""

RESUME_FREE = ("train.epochs", "train.device", "train.num_threads", "train.log_every", "data.path")
"""Keys that may differ between a checkpoint and the run that resumes it."""


@dataclass(frozen=True)
class DataSpec:
    """Where the paired embeddings come from and how they are split."""

    path: str | list[str] | None = None
    """A .npy (MultiNat dict), .npz, .parquet file or a .zarr folder; None when data is passed from Python.
    A list of two gives the published pair of sources: the all-paired (TaxaBind) set first, then the iNat
    set (rows without audio); see ``source_sampling``."""
    modalities: tuple[str, ...] | None = None
    """Modalities the data holds (default all six); others are treated as missing in every row."""
    val_fraction: float = 0.1
    """Share of rows held out for validation (scores for MIAM/OPM and the validation loss)."""
    on_nan: str = "error"
    """``error`` stops on NaN/inf embeddings; ``absent`` treats those entries as missing."""
    normalize: bool = True
    """L2-normalise every embedding on load."""
    source_sampling: str = "published"
    """With several sources: ``published`` picks, for every batch, one source with equal probability (½ each
    for the all-paired and the iNat set, as mvrl/proM3E ``dataset.py`` does with ``torch.rand(1) < 0.5``) and
    draws the batch's rows from it without replacement; an epoch has (Σ rows) // batch batches. ``pooled``
    (project option) shuffles all rows together, so each source contributes in proportion to its size.
    With one source both are an ordinary shuffled epoch."""

    def __post_init__(self) -> None:
        if isinstance(self.path, (list, tuple)):
            paths = [str(p) for p in self.path]
            if not paths:
                raise ConfigError("data.path = []: give a file, a list of files, or null")
            object.__setattr__(self, "path", paths[0] if len(paths) == 1 else paths)
        if self.source_sampling not in SOURCE_SAMPLING:
            raise ConfigError(
                f"data.source_sampling = {self.source_sampling!r}: use one of {', '.join(SOURCE_SAMPLING)}"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction = {self.val_fraction!r}: must be in (0, 1), e.g. 0.1")
        if self.on_nan not in ("error", "absent"):
            raise ConfigError(f"data.on_nan = {self.on_nan!r}: use error or absent")
        if self.modalities is not None:
            object.__setattr__(self, "modalities", tuple(str(m) for m in self.modalities))


@dataclass(frozen=True)
class MaskingSpec:
    """Which masking strategy samples the visible modalities, with its parameters."""

    strategy: str = "prom3e"
    """A name from :func:`geoprom3e.model.masking.list_strategies` (``prom3e``, ``miam``, ...)."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Strategy parameters, e.g. ``{kappa: 10, lam: 1.0}`` for miam or ``{p: 0.75}`` for constant."""

    def __post_init__(self) -> None:
        if not isinstance(self.params, Mapping):
            raise ConfigError(f"masking.params = {self.params!r}: must be a mapping such as {{lam: 2.0}}")
        object.__setattr__(self, "params", dict(self.params))
        get_strategy(self.strategy, 6, **self.params)  # validates the name and the values


@dataclass(frozen=True)
class TrainSpec:
    """Optimiser, schedule and loop settings (defaults as published)."""

    epochs: int = 500
    """Number of epochs (published 500)."""
    batch_size: int = 1024
    """Rows per batch; the InfoNCE loss contrasts each row with the rest of its batch (published 1024)."""
    lr: float = 1e-4
    """AdamW learning rate."""
    betas: tuple[float, float] = (0.9, 0.98)
    """AdamW betas."""
    eps: float = 1e-6
    """AdamW epsilon."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    t0: int = 20
    """Epochs of the first cosine cycle (CosineAnnealingWarmRestarts T_0, stepped once per epoch)."""
    eta_min: float = 1e-6
    """Lowest learning rate of each cosine cycle."""
    grad_clip: float = 0.0
    """Project option: clip the gradient norm to this (0 = off, as published: the Lightning Trainer in
    mvrl/proM3E ``train.py`` sets no ``gradient_clip_val``)."""
    amp: bool = False
    """Project option: bf16 autocast on CUDA (never on CPU, where bf16 is slow without AVX512-BF16). Off =
    fp32, as published (no ``precision`` given to the Lightning Trainer)."""
    masked_only: bool = False
    """Reconstruct only the modalities a row did not see (published: every present modality)."""
    seed: int = 0
    """Seed for the split, initial weights, masks, batch order, dropout and the latent noise."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    score: str = "train-target-loss"
    """Per-modality score s_m for dynamic strategies (see :data:`SCORES`): ``train-target-loss`` (default, the
    MIAM paper's self-supervised recipe: m as the reconstruction target on the training set, s = exp(−L_m)),
    or the supervised reading ``top1`` / ``inverse-loss`` (m as the only input, on validation rows)."""
    score_smoothing: float = 0.0
    """Project option: exponential smoothing a of the scores fed to the strategy, s ← a·s_prev + (1 − a)·s_new
    (0 = off, as in the paper). With the validation scores, d_m = |Δ s_m| is dominated by validation noise on
    small validation sets; 0.5–0.9 calms it."""
    score_rows: int = 2048
    """Validation rows used for the per-modality scores (retrieval over this many)."""
    early_stopping: int = 0
    """Project option from MIAM (off = 0, as in the published 500-epoch run): stop when the early-stopping
    criterion has not improved for this many epochs, and leave the best epoch's weights in ``model/``. The
    criterion follows MIAM's rule of validating on every single modality plus all modalities together: the
    mean of the M + 1 validation losses, one with each modality alone as input (the others its targets) and
    one leave-one-out loss with all other modalities as input for each target (lower is better)."""
    error_weight: float = 1.0
    """Weight of the :func:`~geoprom3e.model.loss.error_nll` term (only with ``model.error_head``)."""
    keep_checkpoints: int = 2
    """Epoch checkpoints to keep (the newest ones); older ones are deleted."""
    num_threads: int = 0
    """CPU threads for torch during the run (0 leaves torch's default; 1 is fastest for small models on a
    busy machine, where oversubscribed threads can be many times slower)."""
    log_every: int = 10
    """Steps between progress reports."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "t0", "score_rows", "keep_checkpoints", "log_every"):
            _positive_int(f"train.{name}", getattr(self, name))
        if self.batch_size < 2:
            raise ConfigError(f"train.batch_size = {self.batch_size}: the contrastive loss needs at least 2")
        for name in ("lr", "eps"):
            _float_in(f"train.{name}", getattr(self, name), 0.0, math.inf, low_open=True)
        _float_in("train.weight_decay", self.weight_decay, 0.0, math.inf)
        _float_in("train.eta_min", self.eta_min, 0.0, self.lr)
        _float_in("train.grad_clip", self.grad_clip, 0.0, math.inf)
        _float_in("train.score_smoothing", self.score_smoothing, 0.0, 0.99)
        _float_in("train.error_weight", self.error_weight, 0.0, math.inf)
        if not isinstance(self.early_stopping, int) or isinstance(self.early_stopping, bool) or self.early_stopping < 0:
            raise ConfigError(f"train.early_stopping = {self.early_stopping!r}: patience in epochs, 0 = off")
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"train.betas = {self.betas!r}: must be two numbers in [0, 1), e.g. [0.9, 0.98]")
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))
        if self.score not in SCORES:
            raise ConfigError(f"train.score = {self.score!r}: use one of {', '.join(SCORES)}")
        if not (self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:")):
            raise ConfigError(f"train.device = {self.device!r}: use auto, cpu, cuda or cuda:N")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"train.seed = {self.seed!r}: must be an integer >= 0")
        if not isinstance(self.num_threads, int) or self.num_threads < 0:
            raise ConfigError(f"train.num_threads = {self.num_threads!r}: must be an integer >= 0")
        for name in ("amp", "masked_only"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"train.{name} = {getattr(self, name)!r}: must be true or false")


@dataclass(frozen=True)
class TrainRecipe:
    """Everything a training run needs; written as ``recipe.yaml`` beside its checkpoints."""

    model: ProM3EConfig = field(default_factory=ProM3EConfig)
    """Model sizes (published defaults: E = 1024, H = 2048, depth 1, 8 heads, 4 registers)."""
    data: DataSpec = field(default_factory=DataSpec)
    """Data source and split."""
    masking: MaskingSpec = field(default_factory=MaskingSpec)
    """Masking strategy."""
    train: TrainSpec = field(default_factory=TrainSpec)
    """Optimiser and loop."""

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (lists for tuples), as written to YAML."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_yaml(self) -> str:
        """The resolved recipe as YAML."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def fingerprint(self) -> dict[str, Any]:
        """Flat dict of the settings a resumed run must share with its checkpoint."""
        flat = _flatten(self.to_dict())
        return {k: v for k, v in flat.items() if k not in RESUME_FREE}

    def digest(self) -> str:
        """Short hash of :meth:`fingerprint`."""
        return hashlib.sha256(json.dumps(self.fingerprint(), sort_keys=True).encode()).hexdigest()[:16]


_SECTIONS: dict[str, type] = {"model": ProM3EConfig, "data": DataSpec, "masking": MaskingSpec, "train": TrainSpec}


def allowed_keys() -> list[str]:
    """Every ``section.key`` a recipe accepts."""
    return [f"{s}.{f.name}" for s, cls in _SECTIONS.items() for f in dataclasses.fields(cls)]


def load_recipe(
    source: str | Path | Mapping[str, Any] | TrainRecipe | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> TrainRecipe:
    """Defaults, then ``source`` (a YAML path or a nested dict), then overrides (``["train.epochs=3", ...]`` or
    ``{"train.epochs": 3}``); values in ``key=value`` strings are parsed as YAML (``[a, b]``, ``true``, ``1e-4``)."""
    if isinstance(source, TrainRecipe):
        base: dict[str, Any] = source.to_dict()
        where = "recipe"
    elif source is None:
        base, where = {}, "recipe"
    elif isinstance(source, Mapping):
        base, where = _deepcopy(source), "recipe"
    else:
        p = Path(source).expanduser()
        if not p.is_file() and not p.is_absolute():  # a bundled recipe (recipes/train/..., also in a wheel)
            from geoprom3e.resources import recipe_path

            bundled = recipe_path(p)
            p = bundled if bundled.is_file() else p
        if not p.is_file():
            raise ConfigError(
                f"recipe {str(p)!r} does not exist: pass a YAML file such as recipes/train/prom3e-miam.yaml"
            )
        try:
            base = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"recipe {str(p)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
        where = str(p)
    if not isinstance(base, Mapping):
        raise ConfigError(f"{where}: the top level must be a mapping with sections {', '.join(_SECTIONS)}")
    merged = _deepcopy(base)
    for key, value in _parse_overrides(overrides):
        section, _, name = key.partition(".")
        if not name:
            raise ConfigError(f"override {key!r} needs a section: write e.g. train.{key}=... (allowed: section.key)")
        merged.setdefault(section, {})
        if not isinstance(merged[section], dict):
            raise ConfigError(f"{where}: section {section!r} must be a mapping")
        name, _, sub = name.partition(".")
        if sub:  # masking.params.lam=2
            inner = merged[section].setdefault(name, {})
            if not isinstance(inner, dict) or "." in sub:
                raise ConfigError(f"override {key!r}: only section.key or section.key.subkey are allowed")
            inner[sub] = value
        else:
            merged[section][name] = value
    return _build(merged, where)


def _build(d: Mapping[str, Any], where: str) -> TrainRecipe:
    unknown_sections = sorted(set(d) - set(_SECTIONS))
    if unknown_sections:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(unknown_sections)}: allowed: {', '.join(_SECTIONS)}")
    parts: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        values = d.get(section) or {}
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: section {section!r} must be a mapping, got {values!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(f'{section}.{u}' for u in unknown)}: "
                f"allowed in {section}: {', '.join(names)}"
            )
        kwargs = dict(values)
        for f in dataclasses.fields(cls):  # YAML reads 1e-4 (no dot) as a string
            if isinstance(f.default, float) and isinstance(kwargs.get(f.name), str):
                try:
                    kwargs[f.name] = float(kwargs[f.name])
                except ValueError:
                    raise ConfigError(f"{where}: {section}.{f.name} = {kwargs[f.name]!r}: must be a number") from None
        if section == "data" and kwargs.get("modalities") is not None:
            mods = kwargs["modalities"]
            kwargs["modalities"] = tuple(s.strip() for s in mods.split(",")) if isinstance(mods, str) else mods
        if section == "train" and "betas" in kwargs and isinstance(kwargs["betas"], list):
            kwargs["betas"] = tuple(kwargs["betas"])
        try:
            parts[section] = cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{where}: section {section}: {exc}") from None
    return TrainRecipe(**parts)


def _parse_overrides(overrides: Sequence[str] | Mapping[str, Any]) -> list[tuple[str, Any]]:
    if isinstance(overrides, Mapping):
        return list(overrides.items())
    out = []
    for item in overrides:
        key, sep, raw = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value: write e.g. train.epochs=3")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and k != "params":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _deepcopy(d: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=list))


def _positive_int(name: str, v: Any) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ConfigError(f"{name} = {v!r}: must be a positive integer")


def _float_in(name: str, v: Any, low: float, high: float, *, low_open: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v <= high
    ok = ok and (v > low if low_open else v >= low)
    if not ok:
        raise ConfigError(f"{name} = {v!r}: must be a number in {'(' if low_open else '['}{low}, {high}]")
