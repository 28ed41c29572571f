#!/usr/bin/env bash
# Make a PostgreSQL server available on loopback for the database-facing tests.
# Installs Debian's postgresql when missing and starts a throw-away cluster under .pg/ on port
# HEALTHMESH_PG_PORT (default 55432); writes its URL to .pg/url. Run it again: it reuses the cluster.
# When PostgreSQL cannot be installed or started it says why and exits 0: the PostgreSQL tests
# then skip with that reason instead of failing the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
skip() {
  echo "postgres.sh: $1; PostgreSQL tests will skip" >&2
  rm -f .pg/url
  exit 0
}
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
      || skip "apt-get could not install postgresql"
  else
    skip "PostgreSQL is not installed and this user cannot install it"
  fi
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
DATA="$PWD/.pg/data"
PORT=${HEALTHMESH_PG_PORT:-55432}
RUNAS=()
mkdir -p .pg
if [ "$(id -u)" = 0 ]; then
  RUNAS=(runuser -u postgres --)
  chown -R postgres .pg
fi
if [ ! -f "$DATA/PG_VERSION" ]; then
  "${RUNAS[@]}" "$BIN/initdb" -D "$DATA" -U postgres --auth=trust >/dev/null || skip "initdb failed"
fi
if ! "${RUNAS[@]}" "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  "${RUNAS[@]}" "$BIN/pg_ctl" -D "$DATA" -l "$PWD/.pg/log" -w \
    -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
    || skip "the server did not start (see .pg/log: $(tail -1 .pg/log 2>/dev/null))"
fi
echo "postgresql://postgres@127.0.0.1:$PORT/postgres" > .pg/url
