"""A real STAC API on 127.0.0.1: PostgreSQL + PostGIS + pgstac behind stac-fastapi-pgstac (what PC runs).

Needs the Debian packages ``postgresql-15 postgresql-15-postgis-3`` (``.ci/setup.d/stac.sh`` installs them) and the
``stac-server`` extra (``stac-fastapi-pgstac``, ``pypgstac[psycopg]``, ``uvicorn``). About 10–40 s from nothing to the
first search. Use as a context manager::

    with PgStacServer() as api:
        api.load_collection(collection_dict)
        api.load_items(item_dicts)
        pystac_client.Client.open(api.url)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from geoprom3e.errors import ImageryError

log = logging.getLogger(__name__)

_PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str:
    for d in _PG_BIN_DIRS:
        p = Path(d) / name
        if p.exists():
            return str(p)
    found = shutil.which(name)
    if found:
        return found
    raise ImageryError(f"PostgreSQL program {name!r} not found: run `bash .ci/setup.d/stac.sh` (postgresql-15)")


def pgstac_available() -> str | None:
    """``None`` when a pgstac server can start here, else the reason it cannot (for ``pytest.skip``)."""
    try:
        _pg_bin("initdb")
    except ImageryError as exc:
        return str(exc)
    if not any(Path(d).parent.joinpath("lib", "postgis-3.so").exists() for d in _PG_BIN_DIRS):
        return "PostGIS 3 for PostgreSQL not installed: run `bash .ci/setup.d/stac.sh`"
    for mod in ("stac_fastapi.pgstac", "pypgstac", "uvicorn", "psycopg"):
        try:
            __import__(mod)
        except ImportError:
            return f"python package {mod} missing: pip install -e '.[stac-server]'"
    return None


class PgStacServer:
    """PostgreSQL/pgstac in a temp folder plus a uvicorn stac-fastapi-pgstac process, both on free local ports."""

    def __init__(self, workdir: str | Path | None = None, startup_timeout_s: float = 120.0) -> None:
        self.startup_timeout_s = startup_timeout_s
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="geoprom3e-pgstac-"))
        self.pg_port = free_port()
        self.api_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.pg_port}/postgres"
        self._api: subprocess.Popen | None = None
        self._pg_started = False

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def _as_postgres(self, cmd: list[str]) -> list[str]:
        if os.geteuid() == 0:  # initdb/postgres refuse to run as root
            return ["runuser", "-u", "postgres", "--", *cmd]
        return cmd

    def _run(self, cmd: list[str], env: dict | None = None) -> None:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            raise ImageryError(f"{cmd[0]} failed ({res.returncode}): {(res.stderr or res.stdout).strip()[-400:]}")

    def start(self) -> PgStacServer:
        """Init the database, migrate pgstac, start the API; returns self once ``/`` answers."""
        reason = pgstac_available()
        if reason:
            raise ImageryError(reason)
        data, sock = self.workdir / "pgdata", self.workdir / "sock"
        sock.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chmod(self.workdir, 0o777)
            shutil.chown(sock, "postgres")
        initdb = [_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        self._run(self._as_postgres(initdb))
        opts = f"-p {self.pg_port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
        cmd = [_pg_bin("pg_ctl"), "-D", str(data), "-o", opts, "-l", str(self.workdir / "pg.log"), "-w", "start"]
        self._run(self._as_postgres(cmd))
        self._pg_started = True
        self._run([sys.executable, "-m", "pypgstac.pypgstac", "migrate", "--dsn", self.dsn])
        self._sql(
            "INSERT INTO queryables(name, definition, property_wrapper, property_index_type) "
            "VALUES ('eo:cloud_cover', '{\"type\":\"number\"}', 'to_float', 'BTREE') ON CONFLICT DO NOTHING",
            "UPDATE pgstac_settings SET value='on' WHERE name='context'",
        )
        env = dict(os.environ, PGUSER="postgres", PGPASSWORD="unused", PGHOST="127.0.0.1", PGPORT=str(self.pg_port),
                   PGDATABASE="postgres", POSTGRES_USER="postgres", POSTGRES_PASS="unused",
                   POSTGRES_HOST_READER="127.0.0.1", POSTGRES_HOST_WRITER="127.0.0.1", POSTGRES_PORT=str(self.pg_port),
                   POSTGRES_DBNAME="postgres", ENABLE_TRANSACTIONS_EXTENSIONS="false")
        cmd = [sys.executable, "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app", "--factory", "--host",
               "127.0.0.1", "--port", str(self.api_port), "--log-level", "warning"]
        self._api_log = open(self.workdir / "api.log", "wb")
        self._api = subprocess.Popen(cmd, env=env, stdout=self._api_log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self._api.poll() is not None or time.monotonic() > deadline:
                tail = (self.workdir / "api.log").read_text(errors="replace")[-600:]
                self.stop()
                raise ImageryError(f"stac-fastapi-pgstac did not start: {tail}")
            time.sleep(0.3)
        log.info("pgstac STAC API at %s (postgres port %d)", self.url, self.pg_port)
        return self

    def stop(self) -> None:
        """Stop the API and the database and remove the temp folder (when this object made it)."""
        if self._api is not None:
            self._api.terminate()
            try:
                self._api.wait(10)
            except subprocess.TimeoutExpired:
                self._api.kill()
            self._api = None
            self._api_log.close()
        if self._pg_started:
            cmd = [_pg_bin("pg_ctl"), "-D", str(self.workdir / "pgdata"), "-m", "immediate", "-w", "stop"]
            subprocess.run(self._as_postgres(cmd), capture_output=True)
            self._pg_started = False
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PgStacServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- data ------------------------------------------------------------------------------------------------
    def _sql(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True, options="-c search_path=pgstac,public") as conn:
            for s in statements:
                conn.execute(s)

    def load_collection(self, collection: dict) -> None:
        """Insert (or replace) one STAC Collection dict."""
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        with PgstacDB(dsn=self.dsn) as db:
            Loader(db=db).load_collections(iter([collection]), insert_mode=Methods.upsert)

    def load_items(self, items: Iterable[dict]) -> None:
        """Insert (or replace) STAC Item dicts; their collection must be loaded first."""
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        items = [json.loads(json.dumps(i)) for i in items]
        with PgstacDB(dsn=self.dsn) as db:
            Loader(db=db).load_items(iter(items), insert_mode=Methods.upsert)
