"""A threaded HTTP file server with range requests, a fault-injection layer and a SAS-style token endpoint.

Serves a folder of COGs on 127.0.0.1 the way blob storage does (``HEAD``, ``GET`` with ``Range``, keep-alive) so
GDAL's ``/vsicurl/`` path runs for real, and injects what production sees: latency, 5xx, stalls past the client's
timeout, truncated bodies, and 403 once a token is past its lifetime. ``/api/sas/v1/token/<account>/<container>``
answers like Planetary Computer's token endpoint (point ``PC_SDK_SAS_URL`` at ``server.sas_url``)::

    with FaultyFileServer(folder, FaultConfig(latency_s=0.02, error_rate=0.1)) as files:
        rasterio.open(files.url + "/scene/visual.tif")
        files.stats()["requests"]
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from geoprom3e.imagery.reads import clear_gdal_http_cache

_SECRET = b"geoprom3e-local-token-secret"


@dataclass(frozen=True)
class FaultConfig:
    """Faults injected into file requests (the token endpoint is never faulted)."""

    latency_s: float = 0.0
    """Delay before every file response (a round trip to remote storage)."""
    error_rate: float = 0.0
    """Share of file requests answered with ``error_status``."""
    error_status: int = 503
    """Status of injected errors (429, 500, 502, 503, 504)."""
    timeout_rate: float = 0.0
    """Share of file requests that stall ``timeout_s`` and then close without answering."""
    timeout_s: float = 3.0
    """Stall length; set it above the client's timeout."""
    truncate_rate: float = 0.0
    """Share of ranged GETs whose body stops halfway (Content-Length promises more)."""
    require_token: bool = False
    """Answer 403 to file requests without a valid, unexpired token from this server's token endpoint."""
    token_lifetime_s: float = 3600.0
    """Lifetime the token endpoint announces (``msft:expiry``)."""
    server_token_lifetime_s: float | None = None
    """When set, the file server rejects tokens older than this even before ``msft:expiry`` (a revoked token)."""
    seed: int = 0
    """Seed of the fault dice (the order of threaded requests still varies)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two sends: without this, 40 ms delayed-ACK stalls
    server: _Server

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)
        self.server.count("status", status)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(head=False)

    def _token(self, account: str, container: str) -> None:
        f = self.server.faults
        now = time.time()
        se = now + f.token_lifetime_s
        sn = self.server.next_serial()
        sig = hmac.new(_SECRET, f"{container}|{int(now)}|{int(se)}|{sn}".encode(), hashlib.sha256).hexdigest()[:32]
        token = f"st={int(now)}&se={int(se)}&sp=rl&sv=2024-05-04&sr=c&skoid={account}&sn={sn}&sig={sig}"
        expiry = _dt.datetime.fromtimestamp(se, _dt.timezone.utc).isoformat().replace("+00:00", "Z")
        body = json.dumps({"msft:expiry": expiry, "token": token}).encode()
        self.server.count("token_requests", f"{account}/{container}")
        self._send(200, body, {"Content-Type": "application/json"})

    def _token_ok(self, container: str, query: str) -> bool:
        q = {k: v[0] for k, v in parse_qs(query).items()}
        try:
            st, se, sn = int(q["st"]), int(q["se"]), int(q["sn"])
        except (KeyError, ValueError):
            return False
        if sn < self.server.min_serial:
            return False  # revoked
        want = hmac.new(_SECRET, f"{container}|{st}|{se}|{sn}".encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(want, q.get("sig", "")):
            return False
        now = time.time()
        lifetime = self.server.faults.server_token_lifetime_s
        return now < se and (lifetime is None or now < st + lifetime)

    def _serve(self, head: bool) -> None:
        srv = self.server
        u = urlparse(self.path)
        path = unquote(u.path)
        srv.count("requests", "HEAD" if head else "GET")
        if path == "/_faults/stats":  # counters for a server running in another process (benchmarks)
            with srv._lock:
                body = json.dumps({k: {str(kk): vv for kk, vv in v.items()} for k, v in srv.counters.items()})
                if u.query == "reset=1":
                    srv.counters = {}
            return self._send(200, body.encode(), {"Content-Type": "application/json"})
        if path.startswith("/api/sas/v1/token/"):
            parts = path.split("/")[5:]
            if len(parts) == 2:
                return self._token(*parts)
            return self._send(404, b"token path is /api/sas/v1/token/<account>/<container>")
        f = srv.faults
        if f.latency_s:
            time.sleep(f.latency_s)
        dice = srv.roll()
        if dice < f.timeout_rate:
            srv.count("faults", "timeout")
            time.sleep(f.timeout_s)
            self.close_connection = True
            return
        dice -= f.timeout_rate
        if dice < f.error_rate:
            srv.count("faults", f"http{f.error_status}")
            self.close_connection = True
            return self._send(f.error_status, b"injected fault", {"Connection": "close"}, head)
        dice -= f.error_rate
        parts = [p for p in path.split("/") if p]
        if f.require_token and not self._token_ok(parts[0] if parts else "", u.query):
            srv.count("faults", "403")
            return self._send(403, b"AuthenticationFailed: token missing or expired", head=head)
        file = (srv.root / "/".join(parts)).resolve()
        if srv.root not in file.parents or not file.is_file():
            return self._send(404, b"not found", head=head)
        size = file.stat().st_size
        rng = self.headers.get("Range")
        if not rng:
            with open(file, "rb") as fh:
                body = b"" if head else fh.read()
            if head:
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                srv.count("status", 200)
                return
            return self._send(200, body, {"Accept-Ranges": "bytes", "Content-Type": "image/tiff"})
        try:
            a, b = rng.removeprefix("bytes=").split(",")[0].split("-")
            start = int(a)
            end = min(int(b) if b else size - 1, size - 1)
        except ValueError:
            return self._send(416, b"bad range", head=head)
        if start >= size:
            return self._send(416, b"range not satisfiable", {"Content-Range": f"bytes */{size}"}, head)
        with open(file, "rb") as fh:
            fh.seek(start)
            body = fh.read(end - start + 1)
        srv.count("bytes", "sent", len(body))
        headers = {"Content-Range": f"bytes {start}-{end}/{size}", "Accept-Ranges": "bytes",
                   "Content-Type": "image/tiff"}
        if not head and dice < f.truncate_rate and len(body) > 16:
            srv.count("faults", "truncated")
            self.send_response(206)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._send(206, body, headers, head)


def serve_forever_main(root: str, latency_s: float = 0.0) -> None:
    """Serve ``root`` until killed and print the URL first (run in a subprocess, so the server's Python threads
    never compete with the client's for one GIL): ``python -m geoprom3e.testing.faults ROOT [LATENCY_S]``."""
    with FaultyFileServer(root, FaultConfig(latency_s=latency_s)) as fs:
        print(fs.url, flush=True)
        threading.Event().wait()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, root: Path, faults: FaultConfig):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root.resolve()
        self.faults = faults
        self._lock = threading.Lock()
        self._rng = random.Random(faults.seed)
        self.counters: dict[str, Counter] = {}
        self.serial = 0
        self.min_serial = 0

    def next_serial(self) -> int:
        with self._lock:
            self.serial += 1
            return self.serial

    def roll(self) -> float:
        with self._lock:
            return self._rng.random()

    def count(self, group: str, key, n: int = 1) -> None:
        with self._lock:
            self.counters.setdefault(group, Counter())[key] += n


class FaultyFileServer:
    """Serve ``root`` over HTTP on 127.0.0.1 with injected faults; a context manager (starts and stops)."""

    def __init__(self, root: str | Path, faults: FaultConfig | None = None) -> None:
        self.root = Path(root)
        self._server = _Server(self.root, faults or FaultConfig())
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.sas_url = f"{self.url}/api/sas/v1/token"
        self._thread: threading.Thread | None = None

    @property
    def faults(self) -> FaultConfig:
        """The faults now in force."""
        return self._server.faults

    def set_faults(self, faults: FaultConfig | None = None, **changes) -> None:
        """Replace the faults (or change some fields) while serving; the fault dice restart from their seed."""
        base = faults or self._server.faults
        known = {f.name for f in fields(FaultConfig)}
        bad = set(changes) - known
        if bad:
            raise TypeError(f"unknown fault settings {sorted(bad)}: use {sorted(known)}")
        with self._server._lock:
            self._server.faults = replace(base, **changes)
            self._server._rng = random.Random(self._server.faults.seed)

    def revoke_tokens(self) -> None:
        """Reject every token issued so far with 403 (as storage does once a SAS token has expired)."""
        with self._server._lock:
            self._server.min_serial = self._server.serial + 1

    def stats(self) -> dict:
        """Counts so far: ``requests`` (HEAD/GET), ``status``, ``faults``, ``token_requests``, ``bytes``."""
        with self._server._lock:
            c = {k: dict(v) for k, v in self._server.counters.items()}
        c["total_requests"] = sum(c.get("requests", {}).values())
        c["file_requests"] = c["total_requests"] - sum(c.get("token_requests", {}).values())
        return c

    def reset_stats(self) -> None:
        """Zero the counters."""
        with self._server._lock:
            self._server.counters = {}

    def start(self) -> FaultyFileServer:
        """Serve in a background thread (after clearing GDAL's HTTP cache and the COG header cache: ports get
        reused, so an href of an earlier server may name other bytes now)."""
        from geoprom3e.imagery.cog import HEADERS

        clear_gdal_http_cache()
        HEADERS.clear()
        self._thread = threading.Thread(target=self._server.serve_forever, name="faulty-files", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FaultyFileServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()



if __name__ == "__main__":
    import sys

    serve_forever_main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)


class FaultyApiProxy:
    """A reverse proxy on 127.0.0.1 in front of a STAC API that answers the first ``fail_first`` searches with
    ``status`` (429/5xx), then forwards everything. ``counts`` tallies requests by kind (``search``, ``other``).

    The ``Host`` header is forwarded, so the API's links point back through the proxy.
    """

    def __init__(self, upstream: str, *, fail_first: int = 2, status: int = 503) -> None:
        self.upstream = upstream.rstrip("/")
        self.fail_first = fail_first
        self.status = status
        self.counts = {"search": 0, "other": 0, "failed": 0}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """Base URL of the proxy."""
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> FaultyApiProxy:
        """Start serving in a daemon thread."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _forward(self) -> None:
                import urllib.error
                import urllib.request

                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                kind = "search" if self.path.split("?")[0].rstrip("/").endswith("/search") else "other"
                with proxy._lock:
                    proxy.counts[kind] += 1
                    fail = kind == "search" and proxy.counts["failed"] < proxy.fail_first
                    if fail:
                        proxy.counts["failed"] += 1
                if fail:
                    msg = b'{"detail": "injected fault"}'
                    self.send_response(proxy.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                skip = ("content-length", "connection", "accept-encoding")  # relay bodies as they are
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                req = urllib.request.Request(proxy.upstream + self.path, data=body, method=self.command,
                                             headers=headers)
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        status, payload, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
                except urllib.error.HTTPError as exc:
                    status, payload, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
                self.send_response(status)
                self.send_header("Content-Type", ctype or "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _forward  # noqa: N815

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FaultyApiProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
