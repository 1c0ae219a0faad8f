"""Where encoder weights live: the Hugging Face cache, a ``--weights-dir`` folder, or a folder the user names.

Layouts accepted for a published id ``org/name`` (first match wins):

1. an existing path passed as ``weights`` (a folder, or a single weights file for ``loc``/``env``);
2. ``WEIGHTS_DIR/org/name/`` holding the repository's files as published (``geoprom3e weights download
   --weights-dir WEIGHTS_DIR`` writes this), where ``WEIGHTS_DIR`` is ``--weights-dir`` or
   ``$GEOPROM3E_WEIGHTS_DIR``;
3. ``WEIGHTS_DIR`` laid out as a Hugging Face cache (``models--org--name/refs/main`` + ``snapshots/<sha>/``);
4. the default Hugging Face cache (``$HF_HOME/hub``), only when no weights folder was named.

Nothing is downloaded unless asked (``download=True`` or ``geoprom3e weights download``): offline, a
missing id fails with one line that names it and says where to put the files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from geoprom3e.errors import ConfigError, WeightsNotFoundError

log = logging.getLogger(__name__)

WEIGHTS_DIR_ENV = "GEOPROM3E_WEIGHTS_DIR"
"""Environment variable naming a default ``--weights-dir``."""

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class WeightsSpec:
    """A published set of encoder weights and the files a usable copy must hold."""

    repo_id: str
    """Hugging Face repository id, e.g. ``MVRL/ecosat``."""
    modalities: tuple[str, ...]
    """Modalities it serves."""
    kind: str
    """Loader family: ``open_clip``, ``transformers`` or ``state_dict``."""
    required: tuple[tuple[str, ...], ...]
    """Each inner tuple lists alternatives of which at least one file must exist (e.g. safetensors or .bin)."""
    description: str = ""
    """One line for ``geoprom3e weights list``."""
    extra: str = ""
    """pip extra needed to load it ('' when the base install suffices)."""


_W = ("model.safetensors", "pytorch_model.bin")
WEIGHTS: dict[str, WeightsSpec] = {
    s.repo_id: s
    for s in (
        WeightsSpec("MVRL/taxabind-vit-b-16", ("image", "text"), "open_clip",
                    (("open_clip_config.json",), ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")),
                    "TaxaBind open_clip ViT-B/16 (BioCLIP space): ground photos and taxonomic text", "clip"),
        WeightsSpec("MVRL/ecosat", ("sat",), "transformers", (("config.json",), _W),
                    "TaxaBind satellite tower: transformers CLIPVisionModelWithProjection"),
        WeightsSpec("MVRL/ecogeo", ("loc",), "state_dict",
                    (("model.safetensors", "pytorch_model.bin", "location_encoder_weights.pth"),),
                    "TaxaBind location tower: GeoCLIP location-encoder architecture (sigma 1, 16, 256)"),
        WeightsSpec("MVRL/ecoclim", ("env",), "state_dict", (_W,),
                    "TaxaBind environment tower: SINR residual MLP on [elevation, bio1..bio19]"),
        WeightsSpec("MVRL/ecosound", ("audio",), "transformers", (("config.json",), _W),
                    "TaxaBind audio tower: CLAP (48 kHz, 10 s)", "audio"),
    )
}
"""Every published TaxaBind id the registry knows, by id."""


def weights_spec(repo_id: str) -> WeightsSpec:
    """The :class:`WeightsSpec` of a known id; unknown ids list the known ones."""
    try:
        return WEIGHTS[repo_id]
    except KeyError:
        raise ConfigError(f"unknown weights id {repo_id!r}: use one of {', '.join(WEIGHTS)}") from None


def default_weights_dir(weights_dir: str | Path | None = None) -> Path | None:
    """``weights_dir`` if given, else ``$GEOPROM3E_WEIGHTS_DIR``, else ``None`` (Hugging Face cache)."""
    if weights_dir:
        return Path(weights_dir).expanduser()
    env = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(env).expanduser() if env else None


def _hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _missing_files(folder: Path, required: tuple[tuple[str, ...], ...]) -> list[str]:
    return [" or ".join(alts) for alts in required if not any((folder / f).is_file() for f in alts)]


def _from_hf_cache(repo_id: str, cache_dir: Path | None) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, cache_dir=str(cache_dir) if cache_dir else None, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None


def find_weights(repo_id: str, weights_dir: str | Path | None = None) -> Path | None:
    """The local folder holding ``repo_id``'s files, or ``None`` (never downloads)."""
    wdir = default_weights_dir(weights_dir)
    spec = WEIGHTS.get(repo_id)
    required = spec.required if spec else ()
    candidates: list[Path | None] = []
    if wdir is not None:
        candidates.append(wdir / repo_id)
        candidates.append(_from_hf_cache(repo_id, wdir))
    else:
        candidates.append(_from_hf_cache(repo_id, None))
    for c in candidates:
        if c is not None and c.is_dir() and not _missing_files(c, required):
            return c
    return None


def missing_weights_error(repo_id: str, weights_dir: str | Path | None = None) -> WeightsNotFoundError:
    """The one-line error for weights that are not available locally."""
    wdir = default_weights_dir(weights_dir)
    spec = WEIGHTS.get(repo_id)
    files = ", ".join(" or ".join(a) for a in spec.required) if spec else "its files"
    where = f"{wdir / repo_id}/" if wdir else (
        f"a folder you pass with the command's --<modality>-weights option, or the HF cache {_hf_cache_dir()}")
    dl = f" --weights-dir {wdir}" if wdir else ""
    return WeightsNotFoundError(
        f"weights {repo_id} are not available locally: run `geoprom3e weights download {repo_id}{dl}` where the "
        f"internet is reachable, or copy its files ({files}) to {where}"
    )


def resolve_weights(
    weights: str | Path, *, weights_dir: str | Path | None = None, download: bool = False
) -> Path:
    """A local path for ``weights`` (a Hugging Face id or a path), downloading only when ``download`` is set."""
    p = Path(weights).expanduser()
    if p.exists():
        return p
    text = str(weights)
    if not _HF_ID.match(text) or text.startswith((".", "/", "~")):
        raise WeightsNotFoundError(
            f"weights path {text!r} does not exist: pass an existing folder/file or a Hugging Face id like "
            "MVRL/ecosat"
        )
    found = find_weights(text, weights_dir)
    if found is not None:
        return found
    if download:
        return download_weights(text, weights_dir=weights_dir)
    raise missing_weights_error(text, weights_dir)


def download_weights(repo_id: str, *, weights_dir: str | Path | None = None, revision: str | None = None) -> Path:
    """Download ``repo_id`` into ``WEIGHTS_DIR/org/name`` (or the Hugging Face cache) and return the folder."""
    from huggingface_hub import snapshot_download

    wdir = default_weights_dir(weights_dir)
    try:
        if wdir is not None:
            target = wdir / repo_id
            path = snapshot_download(repo_id, revision=revision, local_dir=str(target))
        else:
            path = snapshot_download(repo_id, revision=revision)
    except Exception as exc:  # huggingface_hub raises many types (offline, 401, 404, connection errors)
        msg = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise WeightsNotFoundError(
            f"cannot download {repo_id} ({type(exc).__name__}: {msg}): check the id and the connection, or copy "
            f"the files by hand ({missing_weights_error(repo_id, weights_dir)})"
        ) from None
    log.info("downloaded %s to %s", repo_id, path)
    return Path(path)


@dataclass(frozen=True)
class WeightsReport:
    """Result of :func:`verify_weights` for one id or folder."""

    repo_id: str
    """The id (or the path) checked."""
    path: Path | None
    """Local folder found, or ``None``."""
    ok: bool
    """True when every required file is present and every checked file is intact."""
    problems: tuple[str, ...] = field(default=())
    """One line per problem found."""
    checked: tuple[str, ...] = field(default=())
    """Files whose integrity was checked (safetensors header, Hugging Face blob sha256)."""


def _check_file(f: Path) -> str | None:
    """A problem with one weights file, or ``None``."""
    try:
        if f.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(f), framework="pt") as sf:
                if not list(sf.keys()):
                    return f"{f.name}: holds no tensors"
        elif f.suffix in (".json",):
            json.loads(f.read_text())
        # HF cache blobs of LFS files are named by their sha256: compare.
        real = f.resolve()
        if real.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", real.name):
            h = hashlib.sha256()
            with open(real, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            if h.hexdigest() != real.name:
                return f"{f.name}: sha256 {h.hexdigest()[:12]}… does not match its cache blob name {real.name[:12]}…"
    except Exception as exc:  # a corrupt file may raise anything from the parser
        return f"{f.name}: unreadable ({type(exc).__name__}: {str(exc)[:120]})"
    return None


def verify_weights(weights: str | Path, *, weights_dir: str | Path | None = None) -> WeightsReport:
    """Check that ``weights`` (an id or a folder) is complete and its files are intact."""
    text = str(weights)
    p = Path(weights).expanduser()
    folder = p if p.exists() else (find_weights(text, weights_dir) if _HF_ID.match(text) else None)
    if folder is None:
        if text in WEIGHTS or _HF_ID.match(text):
            return WeightsReport(text, None, False, (str(missing_weights_error(text, weights_dir)),))
        return WeightsReport(text, None, False, (f"{text!r} is neither an existing path nor a Hugging Face id",))
    spec = WEIGHTS.get(text)
    problems = list(f"missing {m}" for m in _missing_files(folder, spec.required)) if spec and folder.is_dir() else []
    files = [folder] if folder.is_file() else sorted(f for f in folder.iterdir() if f.is_file())
    checked = []
    for f in files:
        if f.suffix in (".safetensors", ".json", ".bin", ".pth", ".pt"):
            checked.append(f.name)
            prob = _check_file(f)
            if prob:
                problems.append(prob)
    if not checked:
        problems.append(f"no weights files in {folder}")
    return WeightsReport(text, folder, not problems, tuple(problems), tuple(checked))


@dataclass(frozen=True)
class WeightsStatus:
    """One row of ``geoprom3e weights list``."""

    spec: WeightsSpec
    """The published weights."""
    path: Path | None
    """Local folder, or ``None`` when not available offline."""


def list_weights(weights_dir: str | Path | None = None) -> list[WeightsStatus]:
    """Every known id with its local folder (or ``None``)."""
    return [WeightsStatus(s, find_weights(s.repo_id, weights_dir)) for s in WEIGHTS.values()]


def read_state_dict(path: Path) -> dict:
    """Load a state dict from ``.safetensors`` or (weights only) ``.bin/.pt/.pth``; a folder picks its weights file."""
    import torch

    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin", "location_encoder_weights.pth"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            cands = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.pt*")) + sorted(path.glob("*.bin"))
            if not cands:
                raise WeightsNotFoundError(f"no weights file (.safetensors/.bin/.pt/.pth) in {path}: add one")
            path = cands[0]
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsNotFoundError(
            f"cannot read weights {path} ({type(exc).__name__}): re-download or replace it"
        ) from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise WeightsNotFoundError(f"weights {path} hold a {type(sd).__name__}, not a state dict: re-save it")
    return sd


def download_many(ids: list[str], *, weights_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """Download several ids (each checked against the known ids first); returns (id, folder) pairs."""
    if not ids:
        raise ConfigError(f"name at least one id to download ({', '.join(WEIGHTS)}) or pass --all")
    for i in ids:
        weights_spec(i)
    return [(i, download_weights(i, weights_dir=weights_dir)) for i in ids]


def verify_many(ids: list[str], *, weights_dir: str | Path | None = None) -> list[WeightsReport]:
    """Verify several ids/folders (one report each)."""
    return [verify_weights(i, weights_dir=weights_dir) for i in ids]
