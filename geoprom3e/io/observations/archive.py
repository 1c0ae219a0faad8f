"""Darwin Core Archives (GBIF downloads, IPT exports) and GBIF "simple CSV" zips: find the core table.

A DwC-A is a zip with ``meta.xml`` describing the core data file (delimiter, quote, encoding, header lines,
and which Darwin Core term each column index holds). The core is streamed straight out of the zip, never
extracted. Without ``meta.xml`` a zip must hold exactly one table (the DwC text guide allows this; GBIF's
simple CSV download is such a zip), read with its own header row. Every size the zip declares is checked
before a single byte is decompressed, so a zip bomb is refused up front.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree as ET

from geoprom3e.errors import ObservationError

#: Zip members larger than this must not be compressed more than :data:`MAX_RATIO` times.
RATIO_CHECK_BYTES = 16 * 2**20
#: Deflate packs CSV 5–30×; a zip bomb packs ~1000×.
MAX_RATIO = 200.0
#: Total uncompressed size an archive may declare (a full GBIF US download is ~100 GB).
MAX_ARCHIVE_BYTES = 2**40

_TEXT_SUFFIXES = (".txt", ".csv", ".tsv", ".tab")
_OCCURRENCE = "http://rs.tdwg.org/dwc/terms/Occurrence"
_EVENT = "http://rs.tdwg.org/dwc/terms/Event"


@dataclass(frozen=True)
class TableLayout:
    """How one delimited text table inside an archive is laid out (from ``meta.xml``, or sniffed)."""

    member: str
    """Path of the table inside the zip."""
    delimiter: str = ","
    """Field separator."""
    quote: str | None = '"'
    """Quote character; None when fields are not enclosed."""
    encoding: str = "utf-8"
    """Text encoding."""
    header_lines: int = 1
    """Lines to skip before the first record."""
    columns: tuple[str, ...] | None = None
    """Column names by index (Darwin Core term local names); None = read them from the header row."""
    defaults: dict[str, str] = field(default_factory=dict)
    """Terms declared with a constant ``default`` value and no column."""
    row_type: str = _OCCURRENCE
    """The ``rowType`` URI of the table."""
    id_index: int | None = None
    """Column index of the core's ``<id>`` (or an extension's ``<coreid>``)."""

    @property
    def id_column(self) -> str | None:
        """Name of the id (core) or coreid (extension) column."""
        if self.id_index is None or self.columns is None or self.id_index >= len(self.columns):
            return None
        return self.columns[self.id_index]


@dataclass(frozen=True)
class ArchivePlan:
    """Which tables of an archive hold the occurrences."""

    occurrences: TableLayout
    """The occurrence table (the core, or the Occurrence extension of an Event core)."""
    events: TableLayout | None = None
    """The Event core whose rows the occurrences point to (sampling-event datasets), else None."""


def term_name(uri: str) -> str:
    """Local name of a term URI: ``http://rs.tdwg.org/dwc/terms/decimalLatitude`` → ``decimalLatitude``."""
    name = uri.strip().rstrip("/#")
    for sep in ("/", "#", ":"):
        name = name.rsplit(sep, 1)[-1]
    return name


def check_zip_sizes(zf: zipfile.ZipFile, path: Path, *, max_bytes: int = MAX_ARCHIVE_BYTES,
                    max_ratio: float = MAX_RATIO) -> None:
    """Refuse archives whose declared sizes or compression ratios look like a zip bomb (nothing is read)."""
    total = 0
    for info in zf.infolist():
        total += info.file_size
        if info.file_size > RATIO_CHECK_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > max_ratio:
                raise ObservationError(
                    f"archive {str(path)!r}: member {info.filename!r} declares {info.file_size:,} bytes packed into "
                    f"{info.compress_size:,} (ratio {ratio:,.0f}, limit {max_ratio:g}): refused as a possible zip "
                    "bomb; "
                    "unzip it yourself if you trust it and pass the table"
                )
    if total > max_bytes:
        raise ObservationError(
            f"archive {str(path)!r} declares {total:,} bytes uncompressed (limit {max_bytes:,}): refused as a "
            "possible zip bomb; unzip it yourself if you trust it and pass the table"
        )


def find_core(zf: zipfile.ZipFile, path: Path) -> ArchivePlan:
    """The occurrence table of an archive: the core, or the Occurrence extension of an Event core.

    Sampling-event datasets (IPT's Event core) keep coordinates and dates on the events and species, counts
    and occurrenceStatus (often ABSENT) on the occurrences; the reader joins them by ``coreid``.
    """
    names = {i.filename: i for i in zf.infolist() if not i.is_dir()}
    meta = next((n for n in names if PurePosixPath(n).name.lower() == "meta.xml"), None)
    if meta is None:
        tables = [n for n in names if n.lower().endswith(_TEXT_SUFFIXES) and not _is_side_file(n)]
        if len(tables) == 1:
            return ArchivePlan(TableLayout(member=tables[0], delimiter="", header_lines=1))  # sniffed by the reader
        listing = ", ".join(sorted(names)[:10]) or "nothing"
        raise ObservationError(
            f"archive {str(path)!r} has no meta.xml and {len(tables)} data tables (holds {listing}): "
            "pass a Darwin Core Archive with meta.xml, a zip holding one table, or the table itself"
        )
    try:
        root = ET.fromstring(zf.read(meta))
    except ET.ParseError as exc:
        msg = f"archive {str(path)!r}: {meta} is not valid XML ({exc}): re-export the archive"
        raise ObservationError(msg) from None
    tables = [el for el in root if _local(el.tag) in ("core", "extension")]
    if not tables:
        raise ObservationError(f"archive {str(path)!r}: {meta} declares no <core> table: re-export the archive")
    core = next((t for t in tables if _local(t.tag) == "core"), None)
    if core is None:
        raise ObservationError(f"archive {str(path)!r}: {meta} declares no <core> table: re-export the archive")
    occ = [t for t in tables if t.get("rowType", "").rstrip("/") == _OCCURRENCE]
    if core.get("rowType", "").rstrip("/") == _OCCURRENCE or not occ:
        plan = ArchivePlan(_layout(core, meta, path))
    elif core.get("rowType", "").rstrip("/") == _EVENT:
        plan = ArchivePlan(_layout(occ[0], meta, path), _layout(core, meta, path))
        if plan.occurrences.id_column is None or plan.events.id_column is None:
            raise ObservationError(f"archive {str(path)!r}: {meta} gives no <id>/<coreid> to join the Occurrence "
                                   "extension to its events: fix meta.xml or re-export the archive")
    else:
        raise ObservationError(
            f"archive {str(path)!r}: occurrences are an extension of a {term_name(core.get('rowType', '?'))} core, "
            "which is not supported: export an occurrence-core or event-core archive"
        )
    for layout in (plan.occurrences, plan.events):
        if layout is not None and layout.member not in names:
            raise ObservationError(
                f"archive {str(path)!r}: {meta} names core file {layout.member!r}, which the archive lacks "
                f"(holds {', '.join(sorted(names)[:10])}): re-download or re-export the archive"
            )
    return plan


def _layout(table: ET.Element, meta: str, path: Path) -> TableLayout:
    loc = next((el for el in table.iter() if _local(el.tag) == "location" and (el.text or "").strip()), None)
    if loc is None:
        raise ObservationError(f"archive {str(path)!r}: {meta} gives no <files><location> for the core: re-export it")
    folder = PurePosixPath(meta).parent
    member = str(folder / loc.text.strip()) if str(folder) != "." else loc.text.strip()
    columns: dict[int, str] = {}
    defaults: dict[str, str] = {}
    id_index = None
    for el in table:
        if _local(el.tag) not in ("field", "id", "coreid"):
            continue
        idx = el.get("index")
        term = el.get("term")
        if _local(el.tag) != "field":
            if idx is not None and idx.strip().isdigit():
                id_index = int(idx)
                columns.setdefault(id_index, "coreid" if _local(el.tag) == "coreid" else "id")
            continue
        if not term:
            continue
        name = term_name(term)
        if idx is None or not idx.strip():
            if el.get("default") is not None:
                defaults[name] = el.get("default")
            continue
        if not idx.strip().isdigit():
            raise ObservationError(f"archive {str(path)!r}: {meta} gives index {idx!r} for {term}: fix meta.xml")
        columns[int(idx)] = name
    width = max(columns) + 1 if columns else 0
    taken: set[str] = set()
    named: list[str] = []
    for i in range(width):
        name = columns.get(i, f"column_{i}")
        while name in taken:  # e.g. dc:type and dwc:type
            name = f"{name}_{i}"
        taken.add(name)
        named.append(name)
    quote = _unescape(table.get("fieldsEnclosedBy", '"'))
    return TableLayout(
        member=member,
        delimiter=_unescape(table.get("fieldsTerminatedBy", ",")) or ",",
        quote=quote or None,
        encoding=table.get("encoding", "UTF-8").strip() or "UTF-8",
        header_lines=int(table.get("ignoreHeaderLines", "0") or 0),
        columns=tuple(named),
        defaults=defaults,
        row_type=table.get("rowType", _OCCURRENCE),
        id_index=id_index,
    )


def _unescape(value: str) -> str:
    return value.replace("\\t", "\t").replace("\\n", "\n").replace("\\r", "\r").replace("&quot;", '"')


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _is_side_file(name: str) -> bool:
    low = PurePosixPath(name).name.lower()
    return low in ("eml.xml", "rights.txt", "citations.txt", "readme.txt", "license.txt") or low.startswith(".")
