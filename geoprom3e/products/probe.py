"""``probe``: linear probes from cell representations to a user's own labels (supp. Tables 5–8).

The target is a raster (``PATH[:BAND]``, resampled to the grid: the mode of the pixels in a cell for classes,
their average for continuous values) or GeoJSON polygons (``PATH:FIELD``, the polygon containing each cell
centre). Each token set is probed with spatial block cross-validation (:mod:`geoprom3e.maps.probe`), beside the
same probe on the frozen encoders' own embeddings (the TaxaBind baseline) and on the cell coordinates alone.
Writes ``probe_<target>.json`` and ``probe_<target>.md`` (a table shaped like the paper's Table 5).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoprom3e._version import __version__
from geoprom3e.engine import FuseSettings
from geoprom3e.engine.hidden import Token, parse_tokens
from geoprom3e.errors import ConfigError, InputError, OutputError
from geoprom3e.grid import GridSpec
from geoprom3e.io.atomic import atomic_write_text
from geoprom3e.maps.probe import TASKS, ProbeScore, chance, check_target, probe_cv, spatial_blocks
from geoprom3e.products.base import ProductResult, check_device, open_cache_window
from geoprom3e.products.embedding_map import Representations, iter_token_blocks, prepare_tokens
from geoprom3e.progress import ProgressCallback, report

DEFAULT_TOKENS = "mu,logvar,registers,tokens"
VECTOR_SUFFIXES = (".geojson", ".json")
LABELS = {"mu": "[μ]", "logvar": "[σ] (log-variance)"}


@dataclass(frozen=True)
class ProbeSettings:
    """How ``probe`` fits and scores; validated on construction (before any weights load)."""

    tokens: str | tuple[str, ...] = DEFAULT_TOKENS
    """ProM3E tokens to probe (each alone, and all hidden tokens together); baselines are always added."""
    task: str | None = None
    """``classify`` or ``regress``; None picks from the target (integers and text classify, floats regress)."""
    block_size: int = 8
    """Cells per side of a cross-validation block (neighbouring cells never straddle train and test)."""
    folds: int = 5
    """Cross-validation folds (fewer when there are fewer blocks)."""
    max_cells: int = 50_000
    """Labelled cells used at most (a seeded sample beyond that)."""
    seed: int = 0
    """Seed of the cell sample, the fold assignment and the solvers."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(t.label for t in parse_tokens(self.tokens)))
        if self.task is not None and self.task not in TASKS:
            raise ConfigError(f"--task {self.task!r}: use one of {', '.join(TASKS)}")
        for name, v, lo in (("--block-size", self.block_size, 1), ("folds", self.folds, 2),
                            ("max_cells", self.max_cells, 10), ("--seed", self.seed, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"{name} {v!r}: must be an integer >= {lo}")


@dataclass(frozen=True)
class Target:
    """A target sampled at the grid's cell centres."""

    spec: str
    """As the user wrote it."""
    values: np.ndarray
    """[rows, cols]: class index (int64, -1 = none) or float (NaN = none)."""
    task: str
    """``classify`` or ``regress``."""
    classes: list[str]
    """Class names (classify)."""
    name: str
    """Short name for the output stem (file stem and band/field)."""


@dataclass
class ProbeResult(ProductResult):
    """What :func:`linear_probes` computed and wrote."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    """One row per representation: name, kind, features, cells, metrics."""
    table: str = ""
    """The markdown table."""
    json_path: Path | None = None
    """``probe_<target>.json``."""
    markdown_path: Path | None = None
    """``probe_<target>.md`` (``probe_all.md`` for several targets)."""
    targets: list[dict[str, Any]] = field(default_factory=list)
    """Per target: ``facts``, ``rows``, ``table``, ``json`` and ``markdown`` paths."""

    @property
    def paths(self) -> list[Path]:
        """Files written."""
        out = [p for t in self.targets for p in (t["json"], t["markdown"])]
        return out + [p for p in (self.json_path, self.markdown_path) if p is not None and p not in out]


# ---------------------------------------------------------------------- targets
def parse_target_spec(spec: str) -> tuple[Path, str | None]:
    """(file, band or field) of ``RASTER[:BAND]`` / ``VECTOR:FIELD``; one line when the file does not exist."""
    if not spec:
        raise InputError("--target is empty: pass RASTER[:BAND] or VECTOR.geojson:FIELD")
    if Path(spec).is_file():
        return Path(spec), None
    if ":" in spec:
        path, sel = spec.rsplit(":", 1)
        if Path(path).is_file():
            return Path(path), sel or None
    raise InputError(f"--target {spec!r}: no such file: pass RASTER[:BAND] (a GeoTIFF) or VECTOR.geojson:FIELD")


def read_target(spec: str, grid: GridSpec, task: str | None = None) -> Target:
    """Sample the target named by ``spec`` at the centres of ``grid``'s cells."""
    path, sel = parse_target_spec(spec)
    if path.suffix.lower() in VECTOR_SUFFIXES:
        if not sel:
            raise InputError(f"--target {spec!r}: name the polygons' field to probe: {path}:FIELD")
        values, kind = _sample_vector(path, sel, grid)
        name = f"{path.stem}_{sel}"
    else:
        values, kind = _sample_raster(path, sel, grid, task)
        name = path.stem + (f"_{sel}" if sel else "")
    task = task or kind
    if task == "classify":
        finite = values[_has_value(values)]
        classes = sorted({_class_name(v) for v in finite.tolist()})
        lookup = {c: i for i, c in enumerate(classes)}
        out = np.full(grid.shape, -1, np.int64)
        has = _has_value(values)
        out[has] = [lookup[_class_name(v)] for v in values[has].tolist()]
        return Target(spec, out, task, classes, _safe(name))
    try:
        fv = np.where(_has_value(values), values, np.nan).astype(np.float64)
    except (TypeError, ValueError):
        raise InputError(f"--target {spec!r} holds text classes: use --task classify") from None
    return Target(spec, fv, task, [], _safe(name))


def _class_name(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _has_value(values: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        return np.vectorize(lambda v: v is not None and not (isinstance(v, float) and np.isnan(v)), otypes=[bool])(
            values) if values.size else np.zeros(values.shape, bool)
    return np.isfinite(values.astype(np.float64))


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:60] or "target"


def _crs_error(spec: Any, where: str, exc: Exception) -> InputError:
    return InputError(f"{where} has CRS {str(spec)[:80]!r}, which cannot be reprojected to the grid's CRS "
                      f"({type(exc).__name__}): reproject it to EPSG:4326 first (e.g. gdalwarp -t_srs EPSG:4326)")


def _sample_raster(path: Path, band: str | None, grid: GridSpec, task: str | None) -> tuple[np.ndarray, str]:
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import CRSError, RasterioError
    from rasterio.vrt import WarpedVRT

    try:
        src = rasterio.open(path)
    except RasterioError as exc:
        raise InputError(f"--target {str(path)!r} is not a raster GDAL can read ({exc}): pass a GeoTIFF, or a "
                         "GeoJSON as PATH.geojson:FIELD") from None
    with src:
        if band is None:
            idx = 1
        elif band.isdigit():
            idx = int(band)
        else:
            names = list(src.descriptions)
            if band not in names:
                raise InputError(f"--target {path}:{band}: the raster has no band {band!r} (bands: "
                                 f"{', '.join(str(n or i + 1) for i, n in enumerate(names))}): name one, or its number")
            idx = names.index(band) + 1
        if not 1 <= idx <= src.count:
            raise InputError(f"--target {path}:{band}: the raster has {src.count} band(s): use 1..{src.count}")
        if src.crs is None:
            raise InputError(f"--target {str(path)!r} has no CRS: set one (gdal_edit.py -a_srs EPSG:4326) and rerun")
        integer = np.issubdtype(np.dtype(src.dtypes[idx - 1]), np.integer)
        kind = task or ("classify" if integer else "regress")
        try:
            from pyproj import CRS, Transformer

            Transformer.from_crs(CRS.from_user_input(src.crs.to_wkt()), grid.crs_obj, always_xy=True)
        except Exception as exc:  # noqa: BLE001 - pyproj raises several types for CRSs it cannot handle
            raise _crs_error(src.crs, f"--target {str(path)!r}", exc) from None
        resampling = Resampling.mode if kind == "classify" else Resampling.average
        try:
            with WarpedVRT(src, crs=grid.crs_obj.to_wkt(), transform=grid.transform, width=grid.cols,
                           height=grid.rows, resampling=resampling, add_alpha=True) as vrt:
                data = vrt.read(idx).astype(np.float64)
                covered = vrt.read(vrt.count) > 0  # the alpha band: cells the raster covers
        except (CRSError, RasterioError) as exc:
            raise _crs_error(src.crs, f"--target {str(path)!r}", exc) from None
        nodata = src.nodatavals[idx - 1]
    if nodata is not None:
        covered &= ~(np.isnan(data) if np.isnan(nodata) else data == nodata)
    return np.where(covered, data, np.nan), kind


def _sample_vector(path: Path, fld: str, grid: GridSpec) -> tuple[np.ndarray, str]:
    import shapely
    from pyproj import CRS, Transformer
    from shapely.geometry import shape

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"--target {str(path)!r} is not readable GeoJSON ({exc}): pass a GeoJSON FeatureCollection"
                         ) from None
    feats = doc.get("features") if isinstance(doc, dict) else None
    if not feats:
        raise InputError(f"--target {str(path)!r} holds no features: pass a GeoJSON FeatureCollection of polygons")
    fields = sorted({k for f in feats for k in (f.get("properties") or {})})
    if fld not in fields:
        raise InputError(f"--target {path}:{fld}: the features have no field {fld!r} (fields: "
                         f"{', '.join(fields) or 'none'}): name one of them")
    crs_name = ((doc.get("crs") or {}).get("properties") or {}).get("name", "EPSG:4326")
    try:
        tr = Transformer.from_crs(grid.crs_obj, CRS.from_user_input(crs_name), always_xy=True)
    except Exception as exc:  # noqa: BLE001 - pyproj raises several types for CRSs it cannot handle
        raise _crs_error(crs_name, f"--target {str(path)!r}", exc) from None
    geoms, vals = [], []
    for f in feats:
        v = (f.get("properties") or {}).get(fld)
        if v is None or f.get("geometry") is None:
            continue
        try:
            geoms.append(shape(f["geometry"]))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InputError(f"--target {str(path)!r}: a feature has an invalid geometry ({exc}): fix or drop it"
                             ) from None
        vals.append(v)
    x, y = np.meshgrid(*grid.cell_centers_xy())
    with np.errstate(invalid="ignore"):
        px, py = tr.transform(x.ravel(), y.ravel())
    px, py = np.asarray(px), np.asarray(py)
    ok = np.isfinite(px) & np.isfinite(py)
    out = np.full(grid.n_cells, None, dtype=object)
    if geoms and ok.any():
        tree = shapely.STRtree(geoms)
        pts = shapely.points(px[ok], py[ok])
        hit_pt, hit_geom = tree.query(pts, predicate="within")
        first = {}
        for p, g in zip(hit_pt.tolist(), hit_geom.tolist()):
            first.setdefault(p, g)
        where = np.flatnonzero(ok)
        for p, g in first.items():
            out[where[p]] = vals[g]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals) and \
            any(isinstance(v, float) and not float(v).is_integer() for v in vals):
        return np.array([np.nan if v is None else float(v) for v in out]).reshape(grid.shape), "regress"
    return out.reshape(grid.shape), "classify"


# ---------------------------------------------------------------------- the probe
def _features(rep: Representations, token: Token, pos: np.ndarray, n: int) -> np.ndarray:
    """[n, d] features of ``token`` at the cells where ``pos`` [rows, cols] >= 0 (its row index)."""
    x: np.ndarray | None = None
    for dst, block in iter_token_blocks(rep, token):
        p = pos[dst]
        sel = p >= 0
        if x is None:
            x = np.full((n, block.shape[-1]), np.nan, np.float32)
        x[p[sel]] = block[sel]
    return x if x is not None else np.full((n, 1), np.nan, np.float32)


def _label(t: Token) -> str:
    return LABELS.get(t.label, t.label)


def linear_probes(
    target: str | Sequence[str],
    cache: str | Path,
    *,
    grid: GridSpec | None = None,
    out_dir: str | Path = "probe",
    checkpoint: str | Path | None = None,
    fuse: FuseSettings = FuseSettings(),
    settings: ProbeSettings = ProbeSettings(),
    device: str | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> ProbeResult:
    """Probe each token set (and the baselines) against ``target`` (one spec, or several) with spatial block
    cross-validation; write ``probe_<target>.json``/``.md`` per target into ``out_dir``, and for several targets
    ``probe_all.json``/``.md``: one column per target and their average, like the paper's Table 5."""
    t0 = time.perf_counter()
    check_device(device)
    specs = [target] if isinstance(target, str) else list(target)
    if not specs:
        raise InputError("no --target given: pass RASTER[:BAND] or VECTOR.geojson:FIELD")
    tokens = parse_tokens(settings.tokens)
    store, window = open_cache_window(cache, grid)
    valid = store.grid.mask()[window.slices] & window.grid.mask()
    out = Path(out_dir)
    targets = [_checked_target(spec, window, valid, settings) for spec in specs]
    names = [t.name for t in targets]
    if len(set(names)) < len(names):
        raise InputError(f"--target names two targets with the same output name ({', '.join(names)}): rename a file")
    paths = [(out / f"probe_{t.name}.json", out / f"probe_{t.name}.md") for t in targets]
    both = paths + ([(out / "probe_all.json", out / "probe_all.md")] if len(targets) > 1 else [])
    _check_out([p for pair in both for p in pair], overwrite)
    baseline = [Token("emb", m) for m in fuse.visible if m in store.modalities()]
    rep = prepare_tokens(store, window, [*tokens, *[b for b in baseline if b not in tokens]], checkpoint, fuse,
                         device=device, progress=progress)
    results = []
    for tgt, (jp, mp) in zip(targets, paths):
        rows, facts = _probe_one(tgt, rep, valid, fuse, settings, progress)
        facts["seconds"] = round(time.perf_counter() - t0, 2)
        table = probe_table(rows, facts)
        _write(jp, json.dumps({**facts, "rows": rows}, indent=1) + "\n")
        _write(mp, table)
        results.append({"facts": facts, "rows": rows, "table": table, "json": jp, "markdown": mp})
    if len(results) == 1:
        r = results[0]
        return ProbeResult(summary=f"wrote {r['markdown']}", details=r["facts"], rows=r["rows"], table=r["table"],
                           json_path=r["json"], markdown_path=r["markdown"], targets=results)
    rows, table = combined_table(results)
    jp, mp = both[-1]
    _write(jp, json.dumps({"targets": [r["facts"] for r in results], "rows": rows}, indent=1) + "\n")
    _write(mp, table)
    return ProbeResult(summary=f"wrote {mp}", details={"targets": [r["facts"] for r in results]}, rows=rows,
                       table=table, json_path=jp, markdown_path=mp, targets=results)


def _write(path: Path, text: str) -> None:
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"writing {str(path)!r} failed ({exc.strerror or exc}): choose another --out") from None


def _checked_target(spec: str, window: Any, valid: np.ndarray, settings: ProbeSettings) -> Target:
    """The target sampled on the window, or one line when it covers no cell or has a single class."""
    tgt = read_target(spec, window.grid, settings.task)
    has = (tgt.values >= 0) if tgt.task == "classify" else np.isfinite(tgt.values)
    labelled = valid & has
    if not labelled.any():
        raise InputError(f"--target {spec!r} covers no cell of grid {window.grid.name} (bbox "
                         f"{', '.join(f'{v:g}' for v in window.grid.bbox)}): pass a target that overlaps it")
    y_all = tgt.values[labelled]
    if tgt.task == "classify" and np.unique(y_all).size < 2:
        raise InputError(f"--target {spec!r} has a single class ({tgt.classes[int(y_all[0])]!r}) on the grid's "
                         "cells: a probe needs at least two classes (or --task regress for a continuous target)")
    check_target(y_all, tgt.task)
    return tgt


def _probe_one(tgt: Target, rep: Representations, valid: np.ndarray, fuse: FuseSettings, settings: ProbeSettings,
               progress: ProgressCallback | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    window, store = rep.window, rep.cache
    has = (tgt.values >= 0) if tgt.task == "classify" else np.isfinite(tgt.values)
    labelled = valid & has
    rows_i, cols_i = np.nonzero(labelled)
    if rows_i.size > settings.max_cells:
        keep = np.sort(np.random.default_rng(settings.seed).choice(rows_i.size, settings.max_cells, replace=False))
        rows_i, cols_i = rows_i[keep], cols_i[keep]
    n = rows_i.size
    pos = np.full(window.grid.shape, -1, np.int64)
    pos[rows_i, cols_i] = np.arange(n)
    sets: list[tuple[str, str, list[Token]]] = []
    prom = [t for t in rep.tokens if t.kind != "emb"]
    for t in prom:
        sets.append((_label(t), "ProM3E", [t]))
    hidden = [t for t in prom if t.kind in ("mu", "logvar", "register", "token")]
    if len(hidden) > 1:
        sets.append(("all tokens", "ProM3E", hidden))
    embs = [t for t in rep.tokens if t.kind == "emb"]
    for t in embs:
        sets.append((f"TaxaBind {t.label}", "encoder baseline", [t]))
    if len(embs) > 1:
        sets.append(("TaxaBind " + "+".join(str(t.index) for t in embs), "encoder baseline", embs))
    cache_feats: dict[Token, np.ndarray] = {}
    for t in dict.fromkeys(t for _, _, ts in sets for t in ts):
        cache_feats[t] = _features(rep, t, pos, n)
        report(progress, "probe features", 1, len(rep.tokens), unit="tokens")
    lat, lon = window.grid.cell_centers()
    coords = np.stack([np.broadcast_to(lat, window.grid.shape)[rows_i, cols_i],
                       np.broadcast_to(lon, window.grid.shape)[rows_i, cols_i]], axis=1).astype(np.float32)
    feats = {name: np.concatenate([cache_feats[t] for t in ts], axis=1) for name, _, ts in sets}
    feats["coordinates (lat, lon)"] = coords
    kinds = {name: kind for name, kind, _ in sets} | {"coordinates (lat, lon)": "coordinates baseline"}
    common = np.ones(n, bool)
    for x in feats.values():
        common &= np.isfinite(x).all(axis=1)
    if not common.any():
        raise InputError(f"no labelled cell has every representation ({', '.join(feats)}): drop the tokens of "
                         "modalities the cells lack (token:<m>, emb:<m>)")
    y = tgt.values[rows_i, cols_i][common]
    check_target(y, tgt.task)
    groups = spatial_blocks(rows_i[common] + window.row0, cols_i[common] + window.col0, settings.block_size)
    scores: list[tuple[str, ProbeScore]] = []
    for name, x in feats.items():
        scores.append((kinds[name], probe_cv(x[common], y, groups, tgt.task, folds=settings.folds, seed=settings.seed,
                                             name=name)))
        report(progress, "probe", 1, len(feats), unit="probes")
    base = chance(y, tgt.task)
    rows = [{"representation": s.name, "kind": kind, "features": s.n_features, "cells": s.n_cells, **s.metrics}
            for kind, s in scores]
    rows.append({"representation": "chance (majority class)" if tgt.task == "classify" else "chance (the mean)",
                 "kind": "chance", "features": 0, "cells": int(y.size), **base})
    import sklearn

    facts = {"target": tgt.spec, "name": tgt.name, "task": tgt.task, "classes": tgt.classes, "grid": window.grid.name,
             "cells_labelled": int(labelled.sum()), "cells_probed": int(y.size),
             "cells_dropped_missing_representation": int(n - common.sum()),
             "block_size": settings.block_size, "blocks": int(np.unique(groups).size),
             "folds": int(min(settings.folds, np.unique(groups).size)), "fused_group": rep.group,
             "checkpoint": rep.fused.checkpoint if rep.fused else None,
             "model_fingerprint": rep.fused.fingerprint if rep.fused else None,
             "all_tokens": [t.label for t in hidden] if len(hidden) > 1 else [],
             "visible": list(fuse.visible), "settings": asdict(settings), "cache": str(store.path),
             "versions": {"geoprom3e": __version__, "scikit-learn": sklearn.__version__}}
    return rows, facts


def combined_table(results: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Rows and markdown of several targets side by side (the paper's Table 5): each target's headline score
    (accuracy % for classes, R² × 100 for continuous targets) and their average."""
    def score(r: dict[str, Any], task: str) -> float:
        return 100 * (r["accuracy"] if task == "classify" else r["r2"])

    names = [r["representation"] for r in results[0]["rows"]]
    heads = [r["facts"]["name"] + (" (acc %)" if r["facts"]["task"] == "classify" else " (R² × 100)")
             for r in results]
    rows = []
    for i, name in enumerate(names):
        vals = [score(r["rows"][i], r["facts"]["task"]) for r in results]
        rows.append({"representation": name, "kind": results[0]["rows"][i]["kind"],
                     "scores": dict(zip(heads, vals)), "average": float(np.mean(vals))})
    lines = [f"Linear probes of {len(results)} targets (spatial block cross-validation); the average is over targets.",
             "", "| representation | kind | " + " | ".join(heads) + " | average |",
             "|---|---|" + "---:|" * (len(heads) + 1)]
    for r in rows:
        lines.append(f"| {r['representation']} | {r['kind']} | "
                     + " | ".join(f"{v:.1f}" for v in r["scores"].values()) + f" | {r['average']:.1f} |")
    return rows, "\n".join(lines) + "\n"


def probe_table(rows: Sequence[dict[str, Any]], facts: dict[str, Any]) -> str:
    """The markdown table (metrics in %, R² as a fraction), with the facts needed to read it."""
    classify = facts["task"] == "classify"
    cols = ("accuracy", "macro_f1") if classify else ("r2", "rmse")
    head = ("accuracy (%)", "macro-F1 (%)") if classify else ("R²", "RMSE")
    lines = [f"Linear probe of `{facts['target']}` ({facts['task']}, "
             + (f"{len(facts['classes'])} classes" if classify else "continuous")
             + f") on {facts['cells_probed']} cells of {facts['grid']}: spatial block cross-validation, "
             f"{facts['block_size']}×{facts['block_size']}-cell blocks ({facts['blocks']} blocks, {facts['folds']} "
             "folds)." + (f" {facts['cells_dropped_missing_representation']} labelled cells lacking one of the "
                          "representations are left out of every row."
                          if facts.get("cells_dropped_missing_representation") else ""), "",
             f"| representation | kind | features | {head[0]} | {head[1]} |", "|---|---|---:|---:|---:|"]
    for r in rows:
        if classify:
            vals = [f"{100 * r[c]:.1f}" for c in cols]
        else:
            vals = [f"{r[c]:.3f}" for c in cols]
        lines.append(f"| {r['representation']} | {r['kind']} | {r['features']} | {vals[0]} | {vals[1]} |")
    return "\n".join(lines) + "\n"


def _check_out(paths: Sequence[Path], overwrite: bool) -> None:
    from geoprom3e.io.maps import check_output_paths

    check_output_paths(paths[0].parent, paths, overwrite)


