"""Chunked readers for observation tables: CSV/TSV (optionally gzipped) and Parquet/GeoParquet.

Records come out as :class:`ObservationChunk` s (coordinates, integer species codes into one vocabulary
shared by every file, optional weights), so 10M+ records never sit in memory as strings.
"""

from __future__ import annotations

import csv
import json
import logging
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from geoprom3e.errors import ObservationError
from geoprom3e.io.observations.archive import TableLayout, check_zip_sizes, find_core
from geoprom3e.io.observations.columns import CANDIDATES, ROLE_TYPES, resolve_columns
from geoprom3e.io.observations.filters import ReadOptions

log = logging.getLogger(__name__)

_NULLS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]

#: Reasons a record is dropped while reading, in the order they are checked.
DROP_REASONS = (
    "missing coordinates",
    "invalid coordinates",
    "absence (occurrenceStatus ABSENT)",
    "absence (individualCount 0)",
    "absence (organismQuantity 0)",
    "identified above species rank",
    "missing species",
    "other rank",
    "other quality grade",
    "outside date range",
    "outside year range",
    "missing year",
    "coordinate uncertainty above limit",
    "basis of record not selected",
    "missing or non-positive abundance",
    "exact duplicate",
)

_ZERO = r"^\s*[+]?0*(\.0*)?\s*$"  # 0, 0.0, 00, "0 " (not empty: nulls are handled before)


@dataclass
class ObservationChunk:
    """A block of kept records."""

    lat: np.ndarray
    """Latitudes in degrees, float64."""
    lon: np.ndarray
    """Longitudes in degrees, float64."""
    species: np.ndarray
    """Species codes (int32) into :attr:`ObservationReader.species`."""
    weight: np.ndarray | None = None
    """Abundance per record (float64) when weighting by abundance, else None."""

    def __len__(self) -> int:
        return len(self.lat)


@dataclass
class FileStats:
    """What reading one file gave."""

    path: str
    """The file as given."""
    format: str
    """``csv``, ``tsv`` or ``parquet`` (``+gzip`` when compressed)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Role → column name used."""
    rows: int = 0
    """Records read."""
    kept: int = 0
    """Records kept after filters."""
    dropped: Counter = field(default_factory=Counter)
    """Reason → records dropped."""
    lat_range: tuple[float, float] | None = None
    """(min, max) latitude of the kept records."""
    lon_range: tuple[float, float] | None = None
    """(min, max) longitude of the kept records."""
    date_range: tuple[str, str] | None = None
    """(first, last) observation day (``YYYY-MM-DD``) of the kept records that carry a date."""

    def to_dict(self) -> dict:
        """JSON-ready dict (for the manifest)."""
        return {
            "path": self.path, "format": self.format, "columns": self.columns, "rows": self.rows,
            "kept": self.kept, "dropped": dict(self.dropped), "lat_range": self.lat_range, "lon_range": self.lon_range,
            "date_range": self.date_range,
        }


class ObservationReader:
    """Iterate over the kept records of one or more observation files, chunk by chunk.

    >>> reader = ObservationReader(["obs.csv"], ReadOptions())       # doctest: +SKIP
    >>> for chunk in reader: ...                                      # doctest: +SKIP
    >>> reader.species[chunk.species[0]], reader.files[0].dropped     # doctest: +SKIP
    """

    def __init__(self, paths: Sequence[str | Path], options: ReadOptions | None = None) -> None:
        if not paths:
            raise ObservationError("no observation files given: pass at least one CSV/TSV/Parquet file")
        self.paths = [Path(p) for p in paths]
        for p in self.paths:
            if not p.is_file():
                raise ObservationError(f"observation file {str(p)!r} does not exist: check the path")
        self.options = options or ReadOptions()
        self.species: list[str] = []
        self._codes: dict[str, int] = {}
        self.files: list[FileStats] = []
        # hashes of kept records (duplicate removal): a large sorted array and a small recent one, merged when
        # the recent one reaches a quarter of the large one, so the work stays O(n log n) over a run
        self._seen = np.empty(0, dtype=np.uint64)
        self._recent = np.empty(0, dtype=np.uint64)
        self._vocab = pa.array([], pa.string())  # self.species as Arrow, for vectorised lookups

    # -- totals ---------------------------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        """Records read so far, all files."""
        return sum(f.rows for f in self.files)

    @property
    def kept(self) -> int:
        """Records kept so far, all files."""
        return sum(f.kept for f in self.files)

    @property
    def dropped(self) -> dict[str, int]:
        """Reason → records dropped so far, all files."""
        total: Counter = Counter()
        for f in self.files:
            total.update(f.dropped)
        return dict(total)

    def __iter__(self) -> Iterator[ObservationChunk]:
        for path in self.paths:
            yield from self._read_file(path)

    # -- one file -------------------------------------------------------------------------------------------
    def _read_file(self, path: Path) -> Iterator[ObservationChunk]:
        stats = FileStats(str(path), "")
        self.files.append(stats)
        bad = _BadCoordinates()
        try:
            batches = _open(path, self.options, stats)
            for batch in batches:
                chunk = self._convert(batch, stats, bad)
                if chunk is not None and len(chunk):
                    yield chunk
        except pa.ArrowInvalid as exc:
            raise ObservationError(_arrow_message(path, exc, stats)) from None
        except (OSError, EOFError, pa.ArrowException, zipfile.BadZipFile) as exc:  # truncated gzip, bad CRC, ...
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ObservationError(f"file {str(path)!r} cannot be read ({msg}): check that it is complete "
                                   "(re-download or re-export it)") from None
        if bad.count and not self.options.filters.drop_invalid_coordinates:
            raise ObservationError(bad.message(path, stats))
        log.info("%s: %d records read, %d kept, dropped %s", path, stats.rows, stats.kept, dict(stats.dropped))

    def _convert(self, batch: pa.RecordBatch, stats: FileStats, bad: _BadCoordinates) -> ObservationChunk | None:
        n = batch.num_rows
        stats.rows += n
        if n == 0:
            return None
        f = self.options.filters
        lat, lon = _floats(batch.column("lat")), _floats(batch.column("lon"))
        keep = np.ones(n, dtype=bool)

        def drop(cond: np.ndarray, reason: str) -> None:
            hit = cond & keep
            k = int(hit.sum())
            if k:
                stats.dropped[reason] += k
                keep[hit] = False

        drop(~(np.isfinite(lat) & np.isfinite(lon)), "missing coordinates")
        with np.errstate(invalid="ignore"):
            invalid = (np.abs(lat) > 90) | (np.abs(lon) > 180)
        invalid &= keep
        if invalid.any():
            bad.add(lat[invalid], lon[invalid], stats.rows - n + int(np.flatnonzero(invalid)[0]))
        drop(invalid, "invalid coordinates")
        names = batch.schema.names
        if not f.keep_absences:
            if "status" in names:
                drop(_equals(batch.column("status"), "absent"), "absence (occurrenceStatus ABSENT)")
            if "count" in names:
                drop(_is_zero(batch.column("count")), "absence (individualCount 0)")
            if "quantity" in names:
                drop(_is_zero(batch.column("quantity")), "absence (organismQuantity 0)")
        codes = self._species_codes(batch.column("species"))
        if "name" in names and self._name_is_fallback(stats):
            coarse = self._species_codes(batch.column("name"))
            above = (codes < 0) & (coarse >= 0)
            if f.above_species == "count":
                codes = np.where(above, coarse, codes)
            else:
                drop(above, "identified above species rank")
        drop(codes < 0, "missing species")
        if f.rank is not None:
            drop(~_equals(batch.column("rank"), f.rank), "other rank")
        if f.quality_grade is not None:
            drop(~_equals(batch.column("quality"), f.quality_grade), "other quality grade")
        if f.date_from is not None or f.date_to is not None:
            drop(~_in_dates(batch.column("date"), f.date_from, f.date_to), "outside date range")
        if f.years is not None:
            year = _years(batch)
            drop(~np.isfinite(year), "missing year")
            with np.errstate(invalid="ignore"):
                drop((year < f.years[0]) | (year > f.years[1]), "outside year range")
        if f.max_coordinate_uncertainty is not None:
            unc = _floats(batch.column("uncertainty"))
            with np.errstate(invalid="ignore"):
                drop(unc > f.max_coordinate_uncertainty, "coordinate uncertainty above limit")
        if f.basis_of_record is not None:
            drop(~_basis_in(batch.column("basis"), f.basis_of_record), "basis of record not selected")
        weight = None
        if self.options.use_abundance:
            w = _floats(batch.column("abundance"))
            with np.errstate(invalid="ignore"):
                drop(~(np.isfinite(w) & (w > 0)), "missing or non-positive abundance")
            weight = w[keep]
        if f.drop_duplicates:
            drop(self._duplicates(batch, lat, lon, codes, keep), "exact duplicate")
            if weight is not None:
                weight = w[keep]
        chunk = ObservationChunk(lat[keep], lon[keep], codes[keep], weight)
        stats.kept += len(chunk)
        if len(chunk):
            stats.lat_range = _extend(stats.lat_range, chunk.lat)
            stats.lon_range = _extend(stats.lon_range, chunk.lon)
            if "date" in batch.schema.names:
                stats.date_range = _extend_days(stats.date_range, batch.column("date"), keep)
        return chunk

    def _name_is_fallback(self, stats: FileStats) -> bool:
        return stats.columns.get("name") not in (None, stats.columns.get("species"))

    def _duplicates(self, batch: pa.RecordBatch, lat: np.ndarray, lon: np.ndarray, codes: np.ndarray,
                    keep: np.ndarray) -> np.ndarray:
        """Kept records whose (taxon, lat, lon, day, observer) was already seen in this run."""
        idx = np.flatnonzero(keep)
        h = _mix(codes[idx].astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
        h = _mix(h ^ np.ascontiguousarray(lat[idx]).view(np.uint64))
        h = _mix(h ^ np.ascontiguousarray(lon[idx]).view(np.uint64))
        names = batch.schema.names
        if "date" in names:
            h = _mix(h ^ _string_hash(pc.utf8_slice_codeunits(_strings(batch.column("date")), 0, 10))[idx])
        if "observer" in names:
            h = _mix(h ^ _string_hash(_strings(batch.column("observer")))[idx])
        order = np.argsort(h, kind="stable")  # first occurrence of each hash within the chunk
        hs = h[order]
        starts = np.flatnonzero(np.r_[True, hs[1:] != hs[:-1]])
        uniq, first = hs[starts], order[starts]
        dup = np.ones(len(h), dtype=bool)
        dup[first] = False
        seen = _member(self._seen, uniq) | _member(self._recent, uniq)
        dup[first[seen]] = True
        self._recent = _merge_sorted(self._recent, uniq[~seen])
        if len(self._recent) > max(1_000_000, len(self._seen) // 4):
            self._seen, self._recent = _merge_sorted(self._seen, self._recent), np.empty(0, dtype=np.uint64)
        out = np.zeros(len(keep), dtype=bool)
        out[idx[dup]] = True
        return out

    def _species_codes(self, col: pa.Array) -> np.ndarray:
        """Codes into :attr:`species` (−1 for empty/null names); new names join the shared vocabulary."""
        if not pa.types.is_dictionary(col.type):
            col = pc.dictionary_encode(col.cast(pa.string()))
        names = pc.utf8_trim_whitespace(col.dictionary.cast(pa.string()))
        known = pc.index_in(names, value_set=self._vocab).to_numpy(zero_copy_only=False)  # vectorised lookup
        lut = np.empty(len(names) + 1, dtype=np.int32)
        lut[-1] = -1  # null index → -1
        missing = np.flatnonzero(np.isnan(known)) if known.dtype.kind == "f" else np.empty(0, np.int64)
        lut[:-1] = np.where(np.isnan(known), -1, known) if known.dtype.kind == "f" else known
        if len(missing):
            added = False
            for i, name in zip(missing, names.take(pa.array(missing)).to_pylist()):
                if not name:
                    continue
                code = self._codes.get(name)
                if code is None:
                    code = self._codes[name] = len(self.species)
                    self.species.append(name)
                    added = True
                lut[i] = code
            if added:
                self._vocab = pa.array(self.species, pa.string())
        idx = col.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        return lut[idx]


# -- opening files ------------------------------------------------------------------------------------------
def _open(path: Path, options: ReadOptions, stats: FileStats) -> Iterator[pa.RecordBatch]:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"PAR1":
        return _parquet_batches(path, options, stats)
    if magic[:2] == b"PK":
        return _archive_batches(path, options, stats)
    return _text_batches(path, options, stats, gzipped=magic[:2] == b"\x1f\x8b")


def _text_batches(path: Path, options: ReadOptions, stats: FileStats, gzipped: bool) -> Iterator[pa.RecordBatch]:
    header_line = _first_line(path, gzipped)
    delimiter = _sniff_delimiter(header_line)
    stats.format = ("tsv" if delimiter == "\t" else "csv") + ("+gzip" if gzipped else "")
    header = [h.strip() for h in next(csv.reader([header_line], delimiter=delimiter))]
    # Darwin Core / GBIF tab files are unquoted by convention and hold stray quotes in names
    quote = None if delimiter == "\t" and '"' not in header_line else '"'
    yield from _csv_batches(
        lambda: pa.input_stream(str(path), compression="gzip" if gzipped else None),
        header, options, stats, f"file {str(path)!r}", delimiter=delimiter, quote=quote,
    )


def _sniff_delimiter(header_line: str) -> str:
    if "\t" in header_line:
        return "\t"
    return ";" if header_line.count(";") > header_line.count(",") else ","


def _csv_batches(
    open_stream: Callable[[], object],
    header: list[str],
    options: ReadOptions,
    stats: FileStats,
    source: str,
    *,
    delimiter: str,
    quote: str | None,
    encoding: str = "utf8",
    column_names: list[str] | None = None,
    skip_rows: int = 0,
    defaults: dict[str, str] | None = None,
    events: _EventJoin | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream a delimited text table: resolve columns on ``header``, read only those, yield renamed batches.

    Columns of ``header`` that the file lacks come from ``defaults`` (meta.xml constants) or ``events``
    (an Event core joined on the occurrence's coreid).
    """
    defaults = defaults or {}
    encoding = _arrow_encoding(encoding)
    in_file = set(column_names or header) - set(defaults if column_names is None else ())
    cols = _resolve(header, options, source)
    stats.columns = cols
    types = {}
    for role, col in cols.items():
        if role in ROLE_TYPES or col not in types:  # a numeric reading wins over a text one
            types.setdefault(col, ROLE_TYPES.get(role, pa.string()))
    external = [c for c in dict.fromkeys(cols.values()) if c not in in_file]
    read = [c for c in dict.fromkeys(cols.values()) if c in in_file]
    if events is not None and any(c not in defaults for c in external) and events.key not in read:
        read.append(events.key)
    reader = pacsv.open_csv(
        open_stream(),
        read_options=pacsv.ReadOptions(block_size=options.chunk_bytes, encoding=encoding,
                                       column_names=column_names, skip_rows=skip_rows),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=quote or False, newlines_in_values=False),
        convert_options=pacsv.ConvertOptions(
            include_columns=read, column_types={c: t for c, t in types.items() if c in read}, null_values=_NULLS,
            strings_can_be_null=True, quoted_strings_can_be_null=True,
        ),
    )
    for batch in reader:
        if external:
            arrays, names = list(batch.columns), list(batch.schema.names)
            taken = events.take(batch) if events is not None else None
            for c in external:
                if c in defaults:
                    arrays.append(pa.array([defaults[c]] * batch.num_rows, pa.string()))
                else:
                    arrays.append(taken(c))
                names.append(c)
            batch = pa.RecordBatch.from_arrays(arrays, names=names)
        yield _rename(batch, cols)


def _arrow_encoding(name: str) -> str:
    """``utf8`` for any spelling of UTF-8 (pyarrow transcodes, slowly, anything else), else ``name``."""
    import codecs

    try:
        return "utf8" if codecs.lookup(name).name == "utf-8" else name
    except LookupError:
        raise ObservationError(f"text encoding {name!r} is unknown: fix the encoding declared in meta.xml") from None


class _EventJoin:
    """An Event core held in memory (events are few), joined to occurrence batches on their coreid column."""

    def __init__(self, table: pa.Table, id_column: str, key: str) -> None:
        self.table = table
        self.ids = table.column(id_column).combine_chunks().cast(pa.string())
        self.key = key

    @property
    def names(self) -> list[str]:
        """The event columns."""
        return self.table.column_names

    def take(self, batch: pa.RecordBatch) -> Callable[[str], pa.Array]:
        """Column getter for ``batch``'s rows: each occurrence gets its event's value (null without an event)."""
        idx = pc.index_in(batch.column(self.key).cast(pa.string()), value_set=self.ids)
        return lambda name: self.table.column(name).combine_chunks().take(idx)


def _archive_batches(path: Path, options: ReadOptions, stats: FileStats) -> Iterator[pa.RecordBatch]:
    """The occurrence table of a Darwin Core Archive or single-table zip, streamed out of the zip."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ObservationError(f"file {str(path)!r} is not a readable zip archive ({exc}): re-download it") from None
    with zf:
        check_zip_sizes(zf, path, max_bytes=options.max_archive_bytes, max_ratio=options.max_compression_ratio)
        plan = find_core(zf, path)
        layout = plan.occurrences
        source = f"{layout.member!r} in archive {str(path)!r}"
        first = _member_first_line(zf, layout, path)

        def open_member() -> object:
            return zf.open(layout.member)

        if layout.columns is None:  # one table, no meta.xml: its header row names the columns
            delimiter = _sniff_delimiter(first)
            stats.format = "zip/" + ("tsv" if delimiter == "\t" else "csv")
            header = [h.strip() for h in next(csv.reader([first], delimiter=delimiter))]
            quote = None if delimiter == "\t" and '"' not in first else '"'
            yield from _csv_batches(open_member, header, options, stats, source, delimiter=delimiter, quote=quote)
            return
        stats.format = "dwca"
        names = _names(first, layout, path)
        header = names + [d for d in layout.defaults if d not in names]
        events = None
        if plan.events is not None:
            stats.format = "dwca (event core + occurrences)"
            events = _read_events(zf, plan.events, path, layout.id_column)
            header += [c for c in events.names if c not in header]
        yield from _csv_batches(
            open_member, header, options, stats, source, delimiter=layout.delimiter, quote=layout.quote,
            encoding=layout.encoding, column_names=names, skip_rows=layout.header_lines, defaults=layout.defaults,
            events=events,
        )


def _names(first: str, layout: TableLayout, path: Path) -> list[str]:
    """Column names of a meta.xml-described table, checked against the width of its first line."""
    width = _width(first, layout)
    declared = list(layout.columns)
    if width < len(declared):
        missing = [f"{name} (index {i})" for i, name in enumerate(declared) if i >= width]
        raise ObservationError(
            f"archive {str(path)!r}: meta.xml maps {', '.join(missing[:5])} to columns that {layout.member!r} "
            f"lacks (it has {width} columns): fix meta.xml or re-export the archive"
        )
    return declared + [f"column_{i}" for i in range(len(declared), width)]


def _read_events(zf: zipfile.ZipFile, layout: TableLayout, path: Path, key: str) -> _EventJoin:
    names = _names(_member_first_line(zf, layout, path), layout, path)
    with zf.open(layout.member) as fh:
        table = pacsv.read_csv(
            fh,
            read_options=pacsv.ReadOptions(encoding=_arrow_encoding(layout.encoding), column_names=names,
                                           skip_rows=layout.header_lines),
            parse_options=pacsv.ParseOptions(delimiter=layout.delimiter, quote_char=layout.quote or False),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), null_values=_NULLS,
                                                 strings_can_be_null=True),
        )
    for term, value in layout.defaults.items():
        if term not in table.column_names:
            table = table.append_column(term, pa.array([value] * table.num_rows, pa.string()))
    log.info("%s: %d events joined to the occurrences on %s", layout.member, table.num_rows, key)
    return _EventJoin(table, layout.id_column, key)


def _member_first_line(zf: zipfile.ZipFile, layout: TableLayout, path: Path) -> str:
    try:
        with zf.open(layout.member) as fh:
            raw = fh.readline(1 << 20)
    except NotImplementedError as exc:  # e.g. Deflate64 or an encrypted member
        raise ObservationError(f"{layout.member!r} in archive {str(path)!r} cannot be unpacked by Python's zipfile "
                               f"({exc}): unzip it yourself and pass the table, or re-zip it with plain "
                               "deflate") from None
    if not raw.strip():
        raise ObservationError(f"{layout.member!r} in archive {str(path)!r} is empty: re-download or re-export it")
    encoding = layout.encoding or "utf-8"
    try:
        line = raw.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise ObservationError(f"{layout.member!r} in archive {str(path)!r} is not {encoding} text ({exc}): "
                               "fix the encoding declared in meta.xml") from None
    return line.lstrip("\ufeff").rstrip("\r\n")


def _width(line: str, layout: TableLayout) -> int:
    if layout.quote:
        return len(next(csv.reader([line], delimiter=layout.delimiter, quotechar=layout.quote)))
    return len(line.split(layout.delimiter))


def _parquet_batches(path: Path, options: ReadOptions, stats: FileStats) -> Iterator[pa.RecordBatch]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except pa.ArrowException as exc:
        raise ObservationError(f"file {str(path)!r} is not a readable Parquet file ({exc}): re-export it") from None
    header = pf.schema_arrow.names
    stats.format = "parquet"
    geo = _geoparquet_geometry(pf.schema_arrow, header)
    roles = options.roles()
    lower = {h.lower() for h in header}
    has_latlon = any(c.lower() in lower for c in CANDIDATES["lat"]) or options.columns.lat is not None
    if geo is not None and not has_latlon:
        roles = [r for r in roles if r not in ("lat", "lon")]
        stats.format = "geoparquet"
    cols = _resolve(header, options, f"file {str(path)!r}", roles)
    if geo is not None and "lat" not in cols:
        cols["geometry"] = geo[0]
    stats.columns = cols
    columns = list(dict.fromkeys(cols.values()))
    # one row group at a time: a single iter_batches over the whole file keeps Arrow memory growing with the
    # file (measured here with pyarrow 26: +17 MB per million records; cf. apache/arrow#39808)
    batches = (b for g in range(pf.num_row_groups)
               for b in pf.iter_batches(batch_size=options.chunk_rows, columns=columns, row_groups=[g]))
    for batch in batches:
        batch = _rename(batch, cols)
        if "geometry" in cols:
            batch = _points_to_latlon(batch, geo[1], path)
        yield batch


def _resolve(header: list[str], options: ReadOptions, source: str, roles: list[str] | None = None) -> dict[str, str]:
    cols = resolve_columns(header, options.roles() if roles is None else roles, options.columns, source,
                           optional=options.optional_roles())
    if options.filters.years is not None and "year" not in cols and "date" not in cols:
        raise ObservationError(f"{source} has no year or date column for --years (found: {', '.join(header[:25])}): "
                               "pass --date-column NAME")
    return cols


def _rename(batch: pa.RecordBatch, cols: dict[str, str]) -> pa.RecordBatch:
    arrays, names = [], []
    for role, col in cols.items():
        arrays.append(batch.column(col))
        names.append(role)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _geoparquet_geometry(schema: pa.Schema, header: list[str]) -> tuple[str, object] | None:
    meta = (schema.metadata or {}).get(b"geo")
    if not meta:
        return None
    try:
        geo = json.loads(meta)
        name = geo.get("primary_column", "geometry")
        crs = geo.get("columns", {}).get(name, {}).get("crs")
    except (ValueError, AttributeError):
        return None
    return (name, crs) if name in header else None


def _points_to_latlon(batch: pa.RecordBatch, crs: object, path: Path) -> pa.RecordBatch:
    import shapely

    wkb = batch.column("geometry").to_numpy(zero_copy_only=False)
    geoms = shapely.from_wkb(wkb)
    types = shapely.get_type_id(geoms)
    if np.any((types != 0) & (types != -1)):
        raise ObservationError(f"file {str(path)!r}: GeoParquet geometry must be points, found other types: "
                               "convert them to points (centroids) first")
    x, y = shapely.get_x(geoms), shapely.get_y(geoms)
    if crs is not None:
        from pyproj import CRS, Transformer

        src = CRS.from_json_dict(crs) if isinstance(crs, dict) else CRS.from_user_input(crs)
        if src.to_epsg() != 4326 and not src.equals(CRS.from_user_input("OGC:CRS84")):
            x, y = Transformer.from_crs(src, "EPSG:4326", always_xy=True).transform(x, y)
    arrays = [pa.array(np.asarray(y, dtype=np.float64)), pa.array(np.asarray(x, dtype=np.float64))]
    names = ["lat", "lon"]
    for name in batch.schema.names:
        if name != "geometry":
            arrays.append(batch.column(name))
            names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _first_line(path: Path, gzipped: bool) -> str:
    import gzip

    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.readline(1 << 20)
    except (OSError, EOFError) as exc:
        raise ObservationError(f"file {str(path)!r} cannot be read ({exc}): check that it is a complete file") from None
    if not raw.strip():
        raise ObservationError(f"file {str(path)!r} is empty: pass a CSV/TSV with a header row and records")
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ObservationError(
            f"file {str(path)!r} is not UTF-8 text (header bytes {raw[:40]!r}): re-save it as UTF-8 "
            "(e.g. iconv -f latin1 -t utf-8)"
        ) from None
    return line.lstrip("\ufeff").rstrip("\r\n")


def _arrow_message(path: Path, exc: Exception, stats: FileStats) -> str:
    text = str(exc).splitlines()[0]
    if "UTF8" in text or "UTF-8" in text:
        return f"file {str(path)!r} is not UTF-8 text ({text}): re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    if "Empty CSV file" in text:
        return f"file {str(path)!r} is empty: pass a CSV/TSV with a header row and records"
    if "conversion error to double" in text:
        by_col = {v: k for k, v in stats.columns.items()}
        numeric = ("lat", "lon", "abundance", "count", "uncertainty", "year")
        which = ", ".join(f"{c} ({r})" for c, r in by_col.items() if r in numeric)
        return (f"file {str(path)!r}: a numeric column holds text ({text}; numeric columns used: {which}): "
                "fix the value or pick other columns with --lat-column/--lon-column/--abundance-column")
    return f"file {str(path)!r} cannot be parsed ({text}): check the delimiter, quoting and header row"


# -- column helpers -----------------------------------------------------------------------------------------
def _floats(col: pa.Array) -> np.ndarray:
    if not pa.types.is_floating(col.type):
        try:
            col = col.cast(pa.float64())
        except pa.ArrowInvalid as exc:
            raise ObservationError(f"a numeric column holds text ({str(exc).splitlines()[0]}): pick the right "
                                   "column with --lat-column/--lon-column/--abundance-column") from None
    return col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _strings(col: pa.Array) -> pa.Array:
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = col.cast(pa.string())
    return col


def _equals(col: pa.Array, value: str) -> np.ndarray:
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(_strings(col)))
    return pc.fill_null(pc.equal(lowered, value.strip().lower()), False).to_numpy(zero_copy_only=False)


def _extend_days(old: tuple[str, str] | None, col: pa.Array, keep: np.ndarray) -> tuple[str, str] | None:
    """``old`` widened by the ISO days (first 10 characters) of the kept rows of a date column."""
    days = pc.utf8_slice_codeunits(_strings(col), 0, 10).filter(pa.array(keep))
    days = days.filter(pc.match_substring_regex(days, r"^\d{4}-\d{2}-\d{2}$"))
    if not len(days):
        return old
    mm = pc.min_max(days)
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    return (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))


def _in_dates(col: pa.Array, date_from: str | None, date_to: str | None) -> np.ndarray:
    day = pc.utf8_slice_codeunits(_strings(col), 0, 10)
    ok = pc.is_valid(day)
    if date_from is not None:
        ok = pc.and_(ok, pc.greater_equal(day, date_from))
    if date_to is not None:
        ok = pc.and_(ok, pc.less_equal(day, date_to))
    return pc.fill_null(ok, False).to_numpy(zero_copy_only=False)


def _is_zero(col: pa.Array) -> np.ndarray:
    text = _strings(col) if not pa.types.is_floating(col.type) and not pa.types.is_integer(col.type) else None
    if text is None:
        return pc.fill_null(pc.equal(col, 0), False).to_numpy(zero_copy_only=False)
    return pc.fill_null(pc.match_substring_regex(text, _ZERO), False).to_numpy(zero_copy_only=False)


def _years(batch: pa.RecordBatch) -> np.ndarray:
    year = np.full(batch.num_rows, np.nan)
    if "year" in batch.schema.names:
        year = _floats(batch.column("year"))
    if "date" in batch.schema.names and np.isnan(year).any():
        head = pc.utf8_slice_codeunits(_strings(batch.column("date")), 0, 4)
        ok = pc.fill_null(pc.match_substring_regex(head, r"^\d{4}$"), False)
        from_date = pc.if_else(ok, head, None).cast(pa.float64()).to_numpy(zero_copy_only=False)
        year = np.where(np.isnan(year), from_date, year)
    return year


def _basis_in(col: pa.Array, allowed: tuple[str, ...]) -> np.ndarray:
    from geoprom3e.io.observations.filters import normalize_basis

    enc = pc.dictionary_encode(_strings(col))
    lut = np.array([normalize_basis(v or "") in allowed for v in enc.dictionary.to_pylist()] + [False])
    return lut[enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)]


def _string_hash(col: pa.Array) -> np.ndarray:
    """Stable 64-bit hash per value (null → 0), computed once per distinct value."""
    import hashlib

    enc = pc.dictionary_encode(col)
    lut = np.array([int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8).digest(), "little")
                    for v in enc.dictionary.to_pylist()] + [0], dtype=np.uint64)
    return lut[enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)]


def _merge_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Merge sorted ``b`` (values not in ``a``) into sorted ``a`` in linear time."""
    return np.insert(a, np.searchsorted(a, b), b) if len(a) else b.copy()


def _member(sorted_values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Whether each of ``x`` is in the sorted array ``sorted_values``."""
    if not len(sorted_values):
        return np.zeros(len(x), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_values, x), len(sorted_values) - 1)
    return sorted_values[pos] == x


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (uint64, wrapping)."""
    h = h.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return h


def _extend(rng: tuple[float, float] | None, values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    return (lo, hi) if rng is None else (min(rng[0], lo), max(rng[1], hi))


class _BadCoordinates:
    """Counts out-of-range coordinates and says whether they look like swapped lat/lon."""

    def __init__(self) -> None:
        self.count = 0
        self.swappable = 0
        self.example: tuple[float, float, int] | None = None

    def add(self, lat: np.ndarray, lon: np.ndarray, first_row: int) -> None:
        self.count += len(lat)
        self.swappable += int(((np.abs(lon) <= 90) & (np.abs(lat) <= 180)).sum())
        if self.example is None:
            self.example = (float(lat[0]), float(lon[0]), first_row)

    def message(self, path: Path, stats: FileStats) -> str:
        lat_col, lon_col = stats.columns.get("lat", "lat"), stats.columns.get("lon", "lon")
        lat, lon, row = self.example or (float("nan"), float("nan"), 0)
        text = (f"file {str(path)!r}: {self.count:,} of {stats.rows:,} records have latitude outside −90..90 or "
                f"longitude outside −180..180 (e.g. record {row + 1}: {lat_col}={lat:g}, {lon_col}={lon:g})")
        if self.swappable >= 0.5 * self.count:
            return (text + f"; they look swapped ({self.swappable:,} become valid with lat/lon exchanged): pass "
                    f"--lat-column {lon_col} --lon-column {lat_col}")
        return text + ": fix them, or pass --drop-invalid-coordinates to drop and count them"
