"""Ranged HTTP GETs whose failures are classified by their cause (the status and the byte count are seen here,
never guessed from a GDAL message).

``transient``: HTTP 429/5xx, timeouts, connection errors, a body shorter than promised; ``auth``: HTTP 403
(an expired or missing token: re-sign and retry); ``missing``: HTTP 404/410; ``permanent``: anything else.
"""

from __future__ import annotations

import threading

_local = threading.local()


class FetchError(Exception):
    """An HTTP range request that did not return the bytes asked for; ``kind`` says why (see module doc)."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


def _session():
    import requests
    from requests.adapters import HTTPAdapter

    s = getattr(_local, "session", None)
    if s is None:
        s = _local.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=8, max_retries=0)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
    return s


def _total_size(content_range: str) -> int | None:
    try:
        total = content_range.rsplit("/", 1)[1]
        return None if total == "*" else int(total)
    except (IndexError, ValueError):
        return None


def fetch_range(url: str, start: int, stop: int, timeout_s: float) -> tuple[bytes, int | None]:
    """Bytes ``[start, stop)`` of ``url`` (signed already) and the file's total size when the server says it.

    The range is clipped at the end of the file. Raises :class:`FetchError` unless every byte arrived.
    """
    import requests

    try:
        r = _session().get(url, headers={"Range": f"bytes={start}-{stop - 1}"},
                           timeout=(min(10.0, timeout_s), timeout_s))
        body = r.content
    except requests.Timeout:
        raise FetchError("transient", f"timed out after {timeout_s:g}s") from None
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        raise FetchError("transient", f"connection broken ({type(exc).__name__})") from None
    except requests.RequestException as exc:
        raise FetchError("permanent", f"request failed ({type(exc).__name__}: {str(exc)[:120]})") from None
    status = r.status_code
    if status == 206:
        total = _total_size(r.headers.get("Content-Range", ""))
        want = (min(stop, total) if total is not None else stop) - start
        if len(body) != want:
            raise FetchError("transient", f"body cut short ({len(body)} of {want} bytes)", status)
        return body, total
    if status == 200:  # the server ignored Range and sent the whole file
        declared = r.headers.get("Content-Length")
        if declared is not None and int(declared) != len(body):
            raise FetchError("transient", f"body cut short ({len(body)} of {declared} bytes)", status)
        return body[start:stop], len(body)
    if status == 429 or status >= 500:
        raise FetchError("transient", f"HTTP {status}", status)
    if status == 403:
        raise FetchError("auth", "HTTP 403 (token expired or missing)", status)
    if status in (404, 410):
        raise FetchError("missing", f"asset file not found (HTTP {status})", status)
    if status == 416:
        raise FetchError("corrupt", f"byte range {start}-{stop - 1} lies past the end of the file (HTTP 416)", status)
    raise FetchError("permanent", f"HTTP {status}", status)
