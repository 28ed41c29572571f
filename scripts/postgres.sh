#!/usr/bin/env bash
# Make a PostgreSQL server available on loopback for the database-facing tests.
# Installs Debian's postgresql when missing and starts a throw-away cluster under .pg/.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "postgres.sh: PostgreSQL is not installed and this user cannot install it; PostgreSQL tests will skip" >&2
    exit 0
  fi
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
DATA="$PWD/.pg/data"
PORT=${HEALTHMESH_PG_PORT:-55432}
RUNAS=()
if [ "$(id -u)" = 0 ]; then
  RUNAS=(runuser -u postgres --)
  mkdir -p .pg && chown -R postgres .pg
fi
if [ ! -f "$DATA/PG_VERSION" ]; then
  "${RUNAS[@]}" "$BIN/initdb" -D "$DATA" -U postgres --auth=trust >/dev/null
fi
if ! "${RUNAS[@]}" "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  "${RUNAS[@]}" "$BIN/pg_ctl" -D "$DATA" -l "$PWD/.pg/log" -w \
    -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
fi
echo "postgresql://postgres@127.0.0.1:$PORT/postgres" > .pg/url
