#!/usr/bin/env bash
# System packages for the local STAC API the imagery tests start (PostgreSQL 15 + PostGIS 3 for pgstac).
# Run by `.ci/setup --dev` with the venv path as $1. Idempotent; a no-op when already installed.
set -euo pipefail
VENV=${1:-.venv}
need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
ls /usr/lib/postgresql/15/lib/postgis-3.so >/dev/null 2>&1 || need+=(postgresql-15-postgis-3)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "[stac.sh] need ${need[*]} but not root and no sudo: imagery tests against pgstac will be skipped" >&2
    exit 0
  fi
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo -n"
  echo "[stac.sh] installing ${need[*]}" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  # the Debian package starts a cluster on 5432; the tests start their own in a temp folder
  $SUDO pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
fi
# the python side (stac-fastapi-pgstac, pypgstac, uvicorn) comes with the `dev` extra; make sure it is there
"$VENV/bin/python" -c "import stac_fastapi.pgstac, pypgstac, uvicorn" 2>/dev/null || \
  "$VENV/bin/python" -m pip --disable-pip-version-check -q install "stac-fastapi-pgstac==7.2.0" "pypgstac[psycopg]==0.10.0" "uvicorn>=0.30"
