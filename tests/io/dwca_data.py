"""Build Darwin Core Archives / GBIF downloads from the real records in ../shared/data (for the tests)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd

DWC = "http://rs.tdwg.org/dwc/terms/"


def meta_xml(location: str, terms: list[str], *, delimiter: str = "\\t", quote: str = "", encoding: str = "UTF-8",
             header_lines: int = 1, defaults: dict[str, str] | None = None, id_index: int | None = 0) -> str:
    """A meta.xml for an occurrence core whose column ``i`` holds ``terms[i]`` (a local Darwin Core name)."""
    fields = "\n".join(f'    <field index="{i}" term="{DWC}{t}"/>' for i, t in enumerate(terms) if t)
    fields += "".join(f'\n    <field term="{DWC}{t}" default="{v}"/>' for t, v in (defaults or {}).items())
    idx = f'    <id index="{id_index}"/>\n' if id_index is not None else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<archive xmlns="http://rs.tdwg.org/dwc/text/" metadata="eml.xml">\n'
        f'  <core encoding="{encoding}" fieldsTerminatedBy="{delimiter}" linesTerminatedBy="\\n" '
        f'fieldsEnclosedBy="{quote}" ignoreHeaderLines="{header_lines}" '
        'rowType="http://rs.tdwg.org/dwc/terms/Occurrence">\n'
        f"    <files><location>{location}</location></files>\n{idx}{fields}\n  </core>\n</archive>\n"
    )


def neon_occurrences(path: Path, n: int | None = None) -> pd.DataFrame:
    """NEON point counts as Darwin Core occurrence columns (real rows; ``n`` first rows or all)."""
    df = pd.read_csv(path, nrows=n)
    return pd.DataFrame({
        "occurrenceID": [f"NEON-{i}" for i in range(len(df))],
        "decimalLatitude": df.latitude, "decimalLongitude": df.longitude,
        "scientificName": df.scientific_name, "taxonRank": df.taxon_rank.str.upper(),
        "individualCount": df.value.astype(int), "eventDate": df.observation_datetime.str.slice(0, 10),
        "recordedBy": df.plotID, "basisOfRecord": "HUMAN_OBSERVATION", "occurrenceStatus": "PRESENT",
    })


def write_dwca(path: Path, table: pd.DataFrame, *, location: str = "occurrence.txt", meta: str | None = None,
               extra: dict[str, bytes] | None = None, sep: str = "\t", encoding: str = "utf-8") -> Path:
    """Zip ``table`` as ``location`` with a meta.xml (tab-separated, unquoted, one header line, like GBIF)."""
    text = table.to_csv(sep=sep, index=False, lineterminator="\n").encode(encoding)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        if meta is not False:
            zf.writestr("meta.xml", meta or meta_xml(location, list(table.columns)))
        zf.writestr("eml.xml", "<eml/>")
        zf.writestr(location, text)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def event_core_meta(event_terms: list[str], occ_terms: list[str]) -> str:
    """meta.xml of a sampling-event archive (IPT): event.txt core, occurrence.txt extension joined on coreid 0."""
    ev = "\n".join(f'    <field index="{i}" term="{DWC}{t}"/>' for i, t in enumerate(event_terms))
    oc = "\n".join(f'    <field index="{i}" term="{DWC}{t}"/>' for i, t in enumerate(occ_terms) if i)
    common = ('encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" fieldsEnclosedBy="" '
              'ignoreHeaderLines="1"')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<archive xmlns="http://rs.tdwg.org/dwc/text/" metadata="eml.xml">\n'
        f'  <core {common} rowType="http://rs.tdwg.org/dwc/terms/Event">\n'
        f'    <files><location>event.txt</location></files>\n    <id index="0"/>\n{ev}\n  </core>\n'
        f'  <extension {common} rowType="http://rs.tdwg.org/dwc/terms/Occurrence">\n'
        f'    <files><location>occurrence.txt</location></files>\n    <coreid index="0"/>\n{oc}\n  </extension>\n'
        "</archive>\n"
    )
