"""Reading and writing ProM3E checkpoints safely (safetensors, or ``torch.load(weights_only=True)``).

Accepted layouts, as found in the wild:

* ``model.safetensors`` (any name ending ``.safetensors``), with a ``config.json`` beside it or not;
* a folder holding ``config.json`` and a safetensors file (the Hugging Face layout);
* a PyTorch Lightning ``.ckpt``: ``{"state_dict": {"model.<key>": tensor}, "hyper_parameters": ...}``;
* a plain state_dict saved with ``torch.save`` as ``.pt``/``.pth``.

The config comes from a ``config.json`` beside the weights when there is one, else from hyper-parameters
stored in the checkpoint, else from the tensor shapes (heads default to 8, with a warning).
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from geoprom3e.errors import CheckpointError, WeightsNotFoundError
from geoprom3e.io.atomic import atomic_dir
from geoprom3e.model.config import ProM3EConfig

if TYPE_CHECKING:  # pragma: no cover
    from geoprom3e.model.prom3e import ProM3E

log = logging.getLogger(__name__)

_PREFIXES = ("model.", "module.", "net.", "_orig_mod.")
_HPARAM_KEYS = ("hyper_parameters", "hparams", "config", "model_config")


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], ProM3EConfig, str]:
    """Read weights and config from any accepted layout: returns (state_dict, config, how the config was found)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(
            f"checkpoint {str(p)!r} does not exist: pass a .safetensors/.ckpt/.pt file or a folder with "
            "config.json + model.safetensors (or use ProM3E.from_pretrained('MVRL/ProM3E'))"
        )
    config_file: Path | None = None
    if p.is_dir():
        weights = _weights_in_dir(p)
        config_file = p / "config.json" if (p / "config.json").is_file() else None
    else:
        weights = p
        beside = p.parent / "config.json"
        config_file = beside if beside.is_file() else None
    state, hparams = _read_weights(weights)
    state = _strip_prefixes(state)
    if not any(k.startswith("projectors.") for k in state):
        raise CheckpointError(
            f"{str(weights)!r} holds no ProM3E weights (no 'projectors.*' tensors; first keys: "
            f"{', '.join(list(state)[:5]) or 'none'}): is this the right file?"
        )
    if config_file is not None:
        try:
            cfg_dict = json.loads(config_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{str(config_file)!r} is not valid JSON ({exc}): fix or remove it") from None
        inferred = infer_config(state, warn=False)
        cfg_dict = {**{k: v for k, v in inferred.to_dict().items() if k == "proj_hidden_dim"}, **cfg_dict}
        return state, ProM3EConfig.from_dict(cfg_dict, source=str(config_file)), f"config.json ({config_file})"
    if hparams:
        inferred = infer_config(state, warn=False).to_dict()
        known = {k: v for k, v in hparams.items() if k in ProM3EConfig.field_names()}
        return state, ProM3EConfig.from_dict({**inferred, **known}), "hyper-parameters stored in the checkpoint"
    return state, infer_config(state, warn=True), "tensor shapes (heads assumed 8)"


def _weights_in_dir(d: Path) -> Path:
    for name in ("model.safetensors", "prom3e_weights.safetensors"):
        if (d / name).is_file():
            return d / name
    found = sorted(d.glob("*.safetensors")) + sorted(d.glob("*.ckpt")) + sorted(d.glob("*.pt")) + sorted(
        d.glob("*.pth")
    )
    if not found:
        raise CheckpointError(
            f"folder {str(d)!r} holds no weights: expected model.safetensors (or a .ckpt/.pt) beside config.json"
        )
    return found[0]


def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a state_dict (and any stored hyper-parameters) without ever unpickling code."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{str(path)!r} is not a readable safetensors file ({exc})") from None
        hp: dict[str, Any] = {}
        if "config" in meta:
            try:
                hp = json.loads(meta["config"])
            except json.JSONDecodeError:
                hp = {}
        return state, hp
    if not zipfile.is_zipfile(path):
        head = path.read_bytes()[:2]
        if head[:1] != b"\x80":  # not a legacy pickle either
            raise CheckpointError(
                f"{str(path)!r} is not a checkpoint (neither safetensors nor a torch.save file): "
                "pass a .safetensors, .ckpt or .pt file"
            )
    try:
        with warnings.catch_warnings():  # torch warns about legacy pickles before refusing: our one line says it all
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported global"
        raise CheckpointError(
            f"{str(path)!r} needs arbitrary code to unpickle ({first[:160]}); refusing to load it. "
            "Re-save its state_dict with safetensors or torch.save(model.state_dict())"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r} is not a readable checkpoint ({str(exc)[:160]})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{str(path)!r} holds a {type(obj).__name__}, not a state_dict")
    hp = {}
    for key in _HPARAM_KEYS:
        if isinstance(obj.get(key), dict):
            hp = dict(obj[key])
            break
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{str(path)!r} holds no tensors: is it a ProM3E checkpoint?")
    return state, hp


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    changed = True
    while changed:
        changed = False
        for pre in _PREFIXES:
            if state and all(k.startswith(pre) for k in state):
                state = {k[len(pre) :]: v for k, v in state.items()}
                changed = True
    return state


def infer_config(state: dict[str, torch.Tensor], *, warn: bool = True) -> ProM3EConfig:
    """Sizes implied by the tensors of a state_dict (heads cannot be seen: they default to 8)."""
    try:
        cls = state["cls_tokens"]
        embed_dim = int(cls.shape[1])
        m = len({int(x) for x in re.findall(r"^projectors\.(\d+)\.", "\n".join(state), flags=re.M)})
        depth = len({int(x) for x in re.findall(r"^encoder\.(\d+)\.", "\n".join(state), flags=re.M)})
        d = dict(
            input_dim=int(state["projectors.0.net.1.weight"].shape[1]),
            embed_dim=embed_dim,
            num_modalities=m,
            depth=depth,
            heads=8,
            mlp_dim=int(state["encoder.0.mlp.net.1.weight"].shape[0]),
            num_register_tokens=int(state["register_tokens"].shape[0]) if "register_tokens" in state else 0,
            num_cls_tokens=int(cls.shape[0]),
            proj_hidden_dim=int(state["projectors.0.net.1.weight"].shape[0]),
            mask_token="mask_token" in state,
            error_head="error_head.weight" in state,
        )
    except (KeyError, IndexError) as exc:
        raise CheckpointError(
            f"cannot work out the model sizes from the tensors (missing {exc}); put a config.json beside the weights"
        ) from None
    if warn:
        log.warning(
            "no config.json beside the checkpoint: sizes read from tensor shapes, heads assumed to be 8. "
            "Put the published config.json beside the weights if the model used another head count."
        )
    if embed_dim % 8:
        d["heads"] = 1
    return ProM3EConfig(**d)


def load_model(cls: type[ProM3E], path: str | Path, *, map_location: str | torch.device = "cpu") -> ProM3E:
    """Build ``cls`` from the checkpoint's config and load its weights strictly."""
    state, config, how = read_checkpoint(path)
    model = cls(config)
    check_state_dict(model, state, config)
    model.load_state_dict(state, strict=True)
    model.eval()
    log.info("loaded %s (config from %s)", path, how)
    return model.to(map_location)


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], config: ProM3EConfig) -> None:
    """Raise one clear error when keys or shapes of ``state`` do not fit ``model``."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    wrong = [f"{k} {got[k]} != {expected[k]}" for k in expected if k in got and got[k] != expected[k]]
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        parts.append(f"wrong shape {len(wrong)} (e.g. {'; '.join(wrong[:3])})")
    try:
        implied = infer_config(state, warn=False).to_dict()
        implied.pop("dropout", None)
        implied.pop("lambda_kl", None)
        implied.pop("token_init_std", None)
        implied_txt = f"; the tensors imply {implied}"
    except CheckpointError:
        implied_txt = ""
    raise CheckpointError(
        f"checkpoint does not fit a ProM3E with config {config.to_dict()}: {'; '.join(parts)}{implied_txt}. "
        "Fix config.json (or remove it to use the sizes the tensors imply)"
    )


def save_checkpoint(model: ProM3E, directory: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` atomically."""
    from safetensors.torch import save_file

    d = Path(directory)
    with atomic_dir(d) as tmp:
        (tmp / "config.json").write_text(model.config.to_json() + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"config": model.config.to_json(), "format": "pt"})
    return d


def fetch_pretrained(repo_id: str, *, cache_dir: str | Path | None = None, revision: str | None = None) -> Path:
    """Local folder of a Hugging Face model repo (downloading it when online)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id,
                cache_dir=str(cache_dir) if cache_dir else None,
                revision=revision,
                allow_patterns=["*.json", "*.safetensors", "*.ckpt", "*.pt", "*.pth"],
            )
        )
    except Exception as exc:  # noqa: BLE001 - huggingface_hub raises many kinds for offline/missing
        raise WeightsNotFoundError(
            f"cannot get {repo_id!r} from Hugging Face ({type(exc).__name__}): download it where you have internet "
            f"(`huggingface-cli download {repo_id}`) or pass a local path, e.g. "
            "ProM3E.from_checkpoint('path/to/folder_or_file.safetensors') / `--checkpoint PATH`"
        ) from None
