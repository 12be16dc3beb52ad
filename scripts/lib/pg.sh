#!/usr/bin/env bash
# shellcheck shell=bash
#
# scripts/lib/pg.sh: give the caller a PostgreSQL server to test against.
#
# Usage (from a bash script):
#     source scripts/lib/pg.sh
#     pg_ensure_server
#
# pg_ensure_server has two modes:
#   * DATABASE_URL already set: the user's server is used as-is. Nothing is
#     started or installed, and PG_THROWAWAY=0 (unless the URL points at a
#     throwaway cluster that a parent script started with this library; then
#     the parent's control variables are kept so pg_stop/pg_start still work).
#   * DATABASE_URL unset: a private throwaway cluster is created in
#     /tmp/tpg-pg.XXXXXX on a free 127.0.0.1 port and deleted again when the
#     calling shell exits. PostgreSQL is installed with apt-get if missing.
#
# Exported after pg_ensure_server:
#   DATABASE_URL   connection URL for the server under test
#   PG_ADMIN_URL   superuser URL (same as DATABASE_URL unless already set)
#   PG_THROWAWAY   1 if this library owns the cluster, else 0
#   PG_BIN         PostgreSQL bin dir (psql, pg_ctl, ...); may be empty when
#                  an external server is used and no local install exists
#   PG_DATA        data directory of the throwaway cluster (else empty)
#   PG_PORT        TCP port of the throwaway cluster (else empty)
#   PG_LOG         server log file of the throwaway cluster (else empty)
#   PG_RUN_AS      command prefix that runs a program as the cluster owner,
#                  e.g. "runuser -u tpgtest --"; empty if not root
#
# Restarting from other programs (e.g. Rust fault-injection tests): every
# server setting (port, socket dir, ...) lives in the data directory, so a
# plain
#     $PG_RUN_AS $PG_BIN/pg_ctl -D $PG_DATA -m immediate -w stop
#     $PG_RUN_AS $PG_BIN/pg_ctl -D $PG_DATA -l $PG_LOG -w start
# brings the server back on the same port. Run these from a directory the
# owner can read (e.g. /), not from /root.
#
# Functions:
#   pg_ensure_server  see above
#   pg_stop           stop the throwaway server (immediate mode, i.e. a crash)
#   pg_start          start it again on the same port; waits until ready
#   pg_teardown       stop the throwaway server and delete its directory
#   pg_find_psql      print the path of a psql binary (installs one if needed)
#   pg_mask_url URL   print URL with any password replaced by ***
#
# Teardown: pg_ensure_server adds pg_teardown to the EXIT trap, keeping any
# EXIT trap that was already set (it runs after pg_teardown, with the original
# exit status in $?). A caller that sets its own EXIT trap *afterwards*
# replaces ours and must call pg_teardown itself:
#     trap 'pg_teardown; my_cleanup' EXIT

# Every consumer of this library runs in strict mode; enabling it here as well
# keeps the library's own commands from silently continuing after a failure.
set -euo pipefail

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    echo "pg.sh is a library: source it from a bash script, then call pg_ensure_server" >&2
    exit 2
fi

# Sourcing twice (e.g. from two helper scripts) must not reset state such as
# the teardown bookkeeping of an already-started cluster.
if [[ -n ${_PG_SH_LOADED:-} ]]; then
    return 0
fi
_PG_SH_LOADED=1

# Non-root account that owns the throwaway cluster when we run as root
# (initdb and postgres refuse to run as root). Overridable for odd hosts.
: "${PG_OWNER:=tpgtest}"

# Not exported on purpose: only the shell that created the cluster may delete
# it, so nested scripts and subshells never see these.
_PG_TMPDIR=""
_PG_CREATOR_PID=""

_pg_log() {
    printf 'pg.sh: %s\n' "$*" >&2
}

pg_mask_url() {
    # URL form  scheme://user:secret@host  -> scheme://user:***@host
    # key/value form  password=secret      -> password=***
    printf '%s\n' "$1" | sed -E \
        -e 's#(://[^/@:]*:)[^@/]*@#\1***@#' \
        -e 's#(^|[?&[:space:]])password=[^&[:space:]]*#\1password=***#g'
}

# Run a command with root privileges: directly when root, else through sudo.
_pg_as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        _pg_log "error: need root (or sudo) to run: $*"
        return 1
    fi
}

# Run a command as the cluster owner. PG_RUN_AS is a plain string so that it
# can be exported to non-bash consumers; it never contains quoted spaces.
_pg_as_owner() {
    local -a prefix=()
    read -r -a prefix <<<"${PG_RUN_AS:-}"
    # cd / first: the owner usually cannot read the caller's cwd (e.g. /root),
    # which makes pg_ctl/postgres fail to resolve their own paths.
    (cd / && "${prefix[@]}" "$@")
}

# Print the directory holding initdb/pg_ctl/postgres, or fail.
_pg_find_bin() {
    local d candidates
    if [[ -n ${PG_BIN:-} && -x $PG_BIN/pg_ctl && -x $PG_BIN/initdb ]]; then
        printf '%s\n' "$PG_BIN"
        return 0
    fi
    # The crate is developed and tested against 15, so prefer it.
    if [[ -x /usr/lib/postgresql/15/bin/pg_ctl ]]; then
        printf '%s\n' /usr/lib/postgresql/15/bin
        return 0
    fi
    # Otherwise the newest Debian-style install. sort -V orders 9.6 < 15.
    candidates=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
    while IFS= read -r d; do
        if [[ -x $d/pg_ctl && -x $d/initdb ]]; then
            printf '%s\n' "$d"
            return 0
        fi
    done <<<"$candidates"
    # Non-Debian hosts (Homebrew, distro packages) put the tools on PATH.
    if d=$(command -v pg_ctl 2>/dev/null) && [[ -x $(dirname "$d")/initdb ]]; then
        dirname "$d"
        return 0
    fi
    return 1
}

_pg_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        _pg_log "error: PostgreSQL not found and apt-get unavailable; install PostgreSQL or set DATABASE_URL"
        return 1
    fi
    _pg_log "PostgreSQL not found; installing it with apt-get (one-time)"
    # We only need the binaries. On a fresh system, stop the Debian packages
    # from creating (and starting) a system-wide "main" cluster on port 5432,
    # which would just waste memory and a port on CI machines.
    if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
        _pg_as_root mkdir -p /etc/postgresql-common/createcluster.d
        echo 'create_main_cluster = false' |
            _pg_as_root tee /etc/postgresql-common/createcluster.d/00-tracing-postgres-no-main.conf >/dev/null
    fi
    _pg_as_root apt-get update -qq
    _pg_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends postgresql postgresql-client >&2
}

# Decide who owns the cluster and set PG_RUN_AS accordingly.
_pg_setup_owner() {
    if [[ $EUID -ne 0 ]]; then
        PG_OWNER=$(id -un)
        PG_RUN_AS=""
        return 0
    fi
    if ! id -u "$PG_OWNER" >/dev/null 2>&1; then
        # Another script may be creating the same user concurrently, so a
        # failed useradd is only an error if the user still does not exist.
        useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_OWNER" 2>/dev/null ||
            id -u "$PG_OWNER" >/dev/null 2>&1 || {
            _pg_log "error: could not create system user $PG_OWNER"
            return 1
        }
    fi
    if command -v runuser >/dev/null 2>&1; then
        PG_RUN_AS="runuser -u $PG_OWNER --"
    else
        # No runuser (not util-linux): wrap su in a tiny script so PG_RUN_AS
        # stays a simple prefix that other programs can use.
        local wrapper=$_PG_TMPDIR/run-as-owner
        cat >"$wrapper" <<EOF
#!/bin/sh
# Run "\$@" as $PG_OWNER (generated by scripts/lib/pg.sh).
exec su -s /bin/sh -c 'exec "\$0" "\$@"' $PG_OWNER -- "\$@"
EOF
        chmod 755 "$wrapper"
        PG_RUN_AS=$wrapper
    fi
}

# Print a free TCP port on 127.0.0.1.
_pg_pick_port() {
    local port
    # Let the kernel choose: binding to port 0 always yields an unused port.
    if command -v python3 >/dev/null 2>&1 &&
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null) &&
        [[ $port =~ ^[0-9]+$ ]]; then
        printf '%s\n' "$port"
        return 0
    fi
    # Fallback: probe random ports below the Linux ephemeral range (32768+)
    # so we don't collide with the kernel's outgoing connections.
    local _
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 12000))
        if command -v ss >/dev/null 2>&1; then
            if [[ -z $(ss -Htln "sport = :$port" 2>/dev/null) ]]; then
                printf '%s\n' "$port"
                return 0
            fi
        elif ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            # Connection refused: nobody listens there.
            printf '%s\n' "$port"
            return 0
        fi
    done
    _pg_log "error: could not find a free TCP port"
    return 1
}

_pg_ctl() {
    _pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" "$@"
}

_pg_is_running() {
    _pg_ctl status >/dev/null 2>&1
}

_pg_show_log_tail() {
    if [[ -n ${PG_LOG:-} && -f $PG_LOG ]]; then
        _pg_log "last lines of $PG_LOG:"
        tail -n 20 "$PG_LOG" >&2 || true
    fi
}

_pg_require_throwaway() {
    if [[ ${PG_THROWAWAY:-0} != 1 || -z ${PG_DATA:-} || -z ${PG_BIN:-} ]]; then
        _pg_log "error: $1 only works on the throwaway cluster started by pg_ensure_server, not on a server given via DATABASE_URL"
        return 1
    fi
}

pg_stop() {
    _pg_require_throwaway pg_stop || return 1
    if ! _pg_is_running; then
        return 0
    fi
    # Immediate mode is what fault tests want: it behaves like a crash.
    _pg_ctl -s -w -m immediate stop || {
        _pg_log "error: pg_ctl stop failed"
        return 1
    }
}

pg_start() {
    _pg_require_throwaway pg_start || return 1
    if _pg_is_running; then
        return 0
    fi
    # Port, socket dir and tuning come from the data directory's config, so
    # this restarts on the same port. -w waits until connections succeed.
    _pg_ctl -s -w -t 60 -l "$PG_LOG" start || {
        _pg_log "error: could not start PostgreSQL"
        _pg_show_log_tail
        return 1
    }
}

pg_teardown() {
    # Only the shell that created the cluster deletes it: nested scripts that
    # inherited DATABASE_URL, and subshells, must leave it alone.
    if [[ -z $_PG_TMPDIR || $_PG_CREATOR_PID != "$BASHPID" ]]; then
        return 0
    fi
    local dir=$_PG_TMPDIR data=$_PG_TMPDIR/data pid=""
    _PG_TMPDIR=""
    if [[ -f $data/postmaster.pid ]]; then
        pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
        _pg_as_owner "$PG_BIN/pg_ctl" -D "$data" -s -w -t 10 -m immediate stop >/dev/null 2>&1 || true
        # If pg_ctl could not stop it (hung or half-started), don't leave a
        # stray postmaster behind; its children exit once it is gone.
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # Belt and braces against ever deleting something we did not create.
    if [[ $dir == /tmp/tpg-pg.* ]]; then
        rm -rf -- "$dir"
    fi
    return 0
}

# Add pg_teardown in front of the current EXIT trap instead of replacing it.
_pg_install_trap() {
    local current prev=""
    current=$(trap -p EXIT)
    if [[ -n $current ]]; then
        # `trap -p` prints: trap -- '<command>' EXIT, with <command> shell-
        # quoted; eval splits it back into words to recover it verbatim.
        local -a words=()
        eval "words=($current)"
        prev=${words[2]:-}
    fi
    if [[ $prev == *pg_teardown* ]]; then
        return 0
    fi
    # Restore the original exit status before running the previous handler,
    # which may inspect $?. "&& :" keeps a non-zero status from tripping set -e.
    # shellcheck disable=SC2064,SC2154  # expand $prev now, on purpose; _pg_exit_status is set inside the trap
    trap "_pg_exit_status=\$?; pg_teardown; (exit \"\$_pg_exit_status\") && :; ${prev}" EXIT
}

pg_ensure_server() {
    if [[ -n ${DATABASE_URL:-} ]]; then
        export DATABASE_URL
        export PG_ADMIN_URL="${PG_ADMIN_URL:-$DATABASE_URL}"
        if [[ ${PG_THROWAWAY:-0} == 1 && -n ${PG_DATA:-} && -n ${PG_PORT:-} &&
            $DATABASE_URL == *"127.0.0.1:${PG_PORT}/"* ]]; then
            # Inherited from a parent script using this library: same cluster,
            # so keep the controls (the parent still owns teardown).
            export PG_THROWAWAY PG_BIN PG_DATA PG_PORT PG_LOG PG_RUN_AS
            _pg_log "using throwaway server of parent script: $(pg_mask_url "$DATABASE_URL")"
            return 0
        fi
        PG_BIN=$(_pg_find_bin || true)
        export PG_BIN PG_THROWAWAY=0 PG_DATA="" PG_PORT="" PG_LOG="" PG_RUN_AS=""
        _pg_log "using server from DATABASE_URL: $(pg_mask_url "$DATABASE_URL")"
        return 0
    fi

    if ! PG_BIN=$(_pg_find_bin); then
        _pg_install || return 1
        PG_BIN=$(_pg_find_bin) || {
            _pg_log "error: PostgreSQL still not found after installing it"
            return 1
        }
    fi

    # Register cleanup before anything can fail half-way, so an initdb or
    # start failure still removes the directory.
    _PG_TMPDIR=$(mktemp -d /tmp/tpg-pg.XXXXXX)
    _PG_CREATOR_PID=$BASHPID
    _pg_install_trap

    _pg_setup_owner || return 1
    if [[ $EUID -eq 0 ]]; then
        chown "$PG_OWNER": "$_PG_TMPDIR"
    fi
    PG_DATA=$_PG_TMPDIR/data
    PG_LOG=$_PG_TMPDIR/log
    PG_THROWAWAY=1

    # --no-sync: durability of a throwaway cluster is irrelevant, and
    # skipping the fsyncs saves seconds per run.
    if ! _pg_as_owner "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust \
        -E UTF8 --locale=C --no-sync >"$_PG_TMPDIR/initdb.log" 2>&1; then
        _pg_log "error: initdb failed:"
        cat "$_PG_TMPDIR/initdb.log" >&2
        return 1
    fi

    # Settings go into an included file in the data directory rather than
    # onto the pg_ctl command line, so that any later plain `pg_ctl start`
    # (pg_start, or a Rust test using PG_DATA) comes back identically.
    # fsync=off is fine for a throwaway cluster; synchronous_commit keeps its
    # default so commit semantics match production. PG_FSYNC=on (scripts/bench)
    # keeps the server's default, for figures that depend on the cost of a commit.
    local conf=$PG_DATA/tracing-postgres.conf attempt port=""
    echo "include 'tracing-postgres.conf'" >>"$PG_DATA/postgresql.conf"
    # The free port is only reserved once postgres binds it, so another
    # process can race us to it: retry with a fresh port a few times.
    for attempt in 1 2 3; do
        port=$(_pg_pick_port) || return 1
        cat >"$conf" <<EOF
# Written by scripts/lib/pg.sh for a throwaway test cluster.
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$_PG_TMPDIR'
fsync = ${PG_FSYNC:-off}
max_connections = 200
shared_buffers = 256MB
EOF
        if [[ $EUID -eq 0 ]]; then
            chown "$PG_OWNER": "$conf"
        fi
        if _pg_ctl -s -w -t 60 -l "$PG_LOG" start >"$_PG_TMPDIR/pg_ctl.out" 2>&1; then
            break
        fi
        if [[ $attempt == 3 ]]; then
            _pg_log "error: could not start PostgreSQL (port $port)"
            cat "$_PG_TMPDIR/pg_ctl.out" >&2
            _pg_show_log_tail
            return 1
        fi
        _pg_log "start on port $port failed; retrying with another port"
    done

    PG_PORT=$port
    export PG_BIN PG_DATA PG_PORT PG_LOG PG_RUN_AS PG_THROWAWAY
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    export PG_ADMIN_URL="$DATABASE_URL"
    _pg_log "started throwaway PostgreSQL $("$PG_BIN/postgres" --version | sed -E 's/^[^0-9]*([0-9][0-9.]*).*/\1/') at $DATABASE_URL (data: $_PG_TMPDIR, removed on exit)"
}

# Print the path of a psql binary, installing the client if there is none.
pg_find_psql() {
    local d
    if [[ -n ${PG_BIN:-} && -x $PG_BIN/psql ]]; then
        printf '%s\n' "$PG_BIN/psql"
        return 0
    fi
    if command -v psql >/dev/null 2>&1; then
        command -v psql
        return 0
    fi
    if d=$(_pg_find_bin) && [[ -x $d/psql ]]; then
        printf '%s\n' "$d/psql"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        _pg_log "error: psql not found; install the PostgreSQL client"
        return 1
    fi
    _pg_log "psql not found; installing postgresql-client"
    _pg_as_root apt-get update -qq
    _pg_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends postgresql-client >&2
    command -v psql
}
