#!/usr/bin/env bash
# Start, or reuse when already up, PostgreSQL, Redis and clamd, and create the database.
# Addresses come from the same environment variables settings.py reads (with its defaults).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBUG="${DEBUG:-1}"
PY=.venv/bin/python

wait_for() {  # wait_for NAME SECONDS COMMAND...
  local name=$1 seconds=$2; shift 2
  for _ in $(seq 1 $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "services: $name did not come up in ${seconds}s" >&2; return 1
}

# --- PostgreSQL (local cluster, started the way this machine's image starts it) -------
DB_URL=$($PY -c "from yesgoddess import settings as s; print(s.DATABASE_URL)" 2>/dev/null || true)
[ -n "$DB_URL" ] || DB_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/yesgoddess}"
ADMIN_URL="${DB_URL%/*}/postgres"
if ! pg_isready -d "$ADMIN_URL" -q 2>/dev/null; then
  echo "services: starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  fi
  wait_for PostgreSQL 30 pg_isready -d "$ADMIN_URL" -q
fi
DB_NAME="${DB_URL##*/}"; DB_NAME="${DB_NAME%%\?*}"
if ! psql "$ADMIN_URL" -tAc "SELECT 1 FROM pg_database WHERE datname='$DB_NAME'" | grep -q 1; then
  echo "services: creating database $DB_NAME"
  psql "$ADMIN_URL" -qc "CREATE DATABASE \"$DB_NAME\""
fi

# --- Redis -------------------------------------------------------------------------
REDIS_URL=$($PY -c "from yesgoddess import settings as s; print(s.REDIS_URL)")
if ! redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis 15 redis-cli -u "$REDIS_URL" ping
fi

# --- clamd, with the project's config and test signature database ---------------------
SOCKET=$($PY -c "from yesgoddess import settings as s; print(s.CLAMD_SOCKET)")
CONF="$(dirname "$SOCKET")/clamd.conf"
$PY manage.py clamd_config "$CONF" >/dev/null
if ! clamdscan -c "$CONF" --ping 1 >/dev/null 2>&1; then
  echo "services: starting clamd on $SOCKET"
  rm -f "$SOCKET"
  clamd -c "$CONF"
  wait_for clamd 30 clamdscan -c "$CONF" --ping 1
fi
echo "services: PostgreSQL, Redis and clamd are up"
