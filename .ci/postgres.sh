# Sourced by test.sh: make sure a PostgreSQL server answers on 127.0.0.1:PORT with trust
# auth for user postgres and a database DB, installing and starting one when none does.
# Usage: ensure_postgres PORT DB [CLUSTER]   (CLUSTER: the Debian cluster name to create
# when no cluster listens on PORT; "main" unless told.)
# Needs Debian's postgresql-common (pg_lsclusters, pg_ctlcluster), which apt brings.

_pg_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

_pg_as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

_pg_answers() {  # PORT: does anything accept a TCP connection there?
  python3 -c "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" \
    "$1" 2>/dev/null
}

_pg_install() {
  command -v pg_lsclusters >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/postgres \
    >/dev/null 2>&1 && return 0
  echo "installing PostgreSQL (apt)"
  _pg_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive _pg_root apt-get install -y -qq postgresql >/dev/null
}

_pg_start() {  # PORT CLUSTER: start the cluster on PORT, creating one if there is none
  local port=$1 name=$2 found version
  found=$(pg_lsclusters -h | awk -v p="$port" '$3 == p {print $1, $2; exit}')
  if [ -z "$found" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -1)
    echo "creating PostgreSQL cluster $version/$name on port $port"
    _pg_root pg_createcluster "$version" "$name" -p "$port" >/dev/null
    found="$version $name"
  fi
  # shellcheck disable=SC2086  # "version name" are two arguments
  _pg_root pg_ctlcluster $found start 2>/dev/null || _pg_answers "$port"
}

_pg_configure() {  # PORT DB: trust for 127.0.0.1, and the database
  local port=$1 database=$2 hba
  hba=$(_pg_as_postgres psql -p "$port" -tAc 'SHOW hba_file')
  if ! grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' \
       "$hba"; then
    # Rules are read top down: this one goes first.
    _pg_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    _pg_as_postgres psql -p "$port" -qtAc 'SELECT pg_reload_conf()' >/dev/null
  fi
  if [ -z "$(_pg_as_postgres psql -p "$port" -tAc \
             "SELECT 1 FROM pg_database WHERE datname = '$database'")" ]; then
    _pg_as_postgres createdb -p "$port" "$database"
  fi
}

_pg_can_connect() {  # PORT DB: as postgres over TCP, without a password?
  command -v psql >/dev/null 2>&1 || return 1
  psql -h 127.0.0.1 -p "$1" -U postgres -w -d "$2" -qtAc 'SELECT 1' >/dev/null 2>&1
}

_pg_wait() {  # PORT DB: up to 30 s for the server to take connections
  local i
  for i in $(seq 60); do
    _pg_can_connect "$1" "$2" && return 0
    sleep 0.5
  done
  return 1
}

ensure_postgres() {
  local port=$1 database=$2 name=${3:-main}
  if ! _pg_answers "$port"; then
    _pg_install
    _pg_start "$port" "$name"
  fi
  command -v psql >/dev/null 2>&1 || _pg_install
  if ! _pg_can_connect "$port" "$database"; then
    _pg_configure "$port" "$database" || true
  fi
  if ! _pg_wait "$port" "$database"; then
    echo "PostgreSQL on 127.0.0.1:$port does not accept user postgres on database" \
         "'$database' without a password" >&2
    return 1
  fi
}

# A database per test run: cctest_<pid of the run>_<random>. Usage: create_run_database PORT
# (prints the name). Runs killed before their EXIT trap leave theirs behind:
# drop_stale_run_databases PORT drops those whose run's process is gone.
_pg_sql() {  # PORT SQL: as postgres over TCP, on the maintenance database
  psql -h 127.0.0.1 -p "$1" -U postgres -w -d postgres -qtAc "$2"
}

create_run_database() {
  local name i
  name="cctest_$$_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
  # A server shared with other runs may be at max_connections for a moment: try for 60 s.
  for i in $(seq 60); do
    _pg_sql "$1" "CREATE DATABASE $name" >/dev/null 2>&1 && { echo "$name"; return 0; }
    sleep 1
  done
  _pg_sql "$1" "CREATE DATABASE $name" >/dev/null && echo "$name"
}

drop_run_database() {  # PORT NAME
  _pg_sql "$1" "DROP DATABASE IF EXISTS $2 WITH (FORCE)" >/dev/null 2>&1 || true
}

drop_stale_run_databases() {  # PORT
  local name pid
  for name in $(_pg_sql "$1" "SELECT datname FROM pg_database WHERE datname LIKE 'cctest\_%'"); do
    pid=${name#cctest_}
    pid=${pid%%_*}
    [[ $pid =~ ^[0-9]+$ ]] || continue
    kill -0 "$pid" 2>/dev/null || drop_run_database "$1" "$name"
  done
}
