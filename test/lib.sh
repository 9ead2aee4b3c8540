# Shared by test/run-tests, the demo and the benchmark: a throwaway PostgreSQL
# cluster and the mock API, both on loopback, both stopped by crm_cleanup.
# Source it; it sets PGHOST, PGPORT, PGUSER, PGDATABASE, CRM_MOCK_URL, CRM_MOCK_TOKEN.

PG_BIN=${PG_BIN:-$(pg_config --bindir)}
CRM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CRM_WORK=${CRM_WORK:-$(mktemp -d /tmp/crm_fdw.XXXXXX)}
chmod 755 "$CRM_WORK"
[ "$(id -u)" -ne 0 ] || chown postgres "$CRM_WORK"
CRM_MOCK_TOKEN=${CRM_MOCK_TOKEN:-"1|crmtest$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"}
export CRM_MOCK_TOKEN CRM_WORK

# initdb refuses root: run the cluster as the postgres user then.
crm_as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

crm_free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# crm_start_cluster [extra postgresql.conf lines...]
crm_start_cluster() {
  local data="$CRM_WORK/data"
  PGPORT=$(crm_free_port)
  crm_as_pg "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$CRM_WORK/initdb.log" 2>&1 \
    || { cat "$CRM_WORK/initdb.log"; return 1; }
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $PGPORT"
    echo "unix_socket_directories = '$CRM_WORK'"
    echo "fsync = off"
    echo "log_line_prefix = '%m [%p] %q%u@%d '"
    for line in "$@"; do echo "$line"; done
  } | crm_as_pg tee -a "$data/postgresql.conf" >/dev/null
  crm_as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$CRM_WORK/postgres.log" -w -t 60 start >/dev/null \
    || { cat "$CRM_WORK/postgres.log"; return 1; }
  export PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATABASE=postgres
}

crm_stop_cluster() {
  [ -f "$CRM_WORK/data/postmaster.pid" ] && crm_as_pg "$PG_BIN/pg_ctl" -D "$CRM_WORK/data" -m fast -w stop >/dev/null 2>&1
  return 0
}

# crm_start_mock [mock_api.py options...]
crm_start_mock() {
  rm -f "$CRM_WORK/mock.port"
  /usr/bin/python3 "$CRM_ROOT/test/mock/mock_api.py" --port 0 --port-file "$CRM_WORK/mock.port" \
    --token "$CRM_MOCK_TOKEN" "$@" >"$CRM_WORK/mock.log" 2>&1 &
  CRM_MOCK_PID=$!
  for _ in $(seq 1 100); do
    [ -s "$CRM_WORK/mock.port" ] && break
    kill -0 "$CRM_MOCK_PID" 2>/dev/null || { cat "$CRM_WORK/mock.log"; return 1; }
    sleep 0.1
  done
  [ -s "$CRM_WORK/mock.port" ] || { echo "mock API did not start"; return 1; }
  CRM_MOCK_BASE="http://127.0.0.1:$(cat "$CRM_WORK/mock.port")"
  CRM_MOCK_URL="$CRM_MOCK_BASE/api/crm"
  export CRM_MOCK_BASE CRM_MOCK_URL CRM_MOCK_PID
}

crm_stop_mock() {
  [ -n "${CRM_MOCK_PID:-}" ] && kill "$CRM_MOCK_PID" 2>/dev/null && wait "$CRM_MOCK_PID" 2>/dev/null
  return 0
}

crm_cleanup() {
  crm_stop_mock
  crm_stop_cluster
  [ -n "${CRM_KEEP_WORK:-}" ] || rm -rf "$CRM_WORK"
}

# Build and install the extension (warnings are errors).
crm_build_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  make -C "$CRM_ROOT" -s WERROR=1 >/dev/null
  $sudo make -C "$CRM_ROOT" -s install >/dev/null
}
