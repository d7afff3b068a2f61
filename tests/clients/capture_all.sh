#!/usr/bin/env bash
# Regenerates the golden frames in broker/tests/golden/<client>/ from real clients: for each
# client, a recording proxy (capture_proxy.py) on 127.0.0.1:Q and a fresh broker on
# 127.0.0.2:Q advertising 127.0.0.1, so every connection the client opens, bootstrap or not,
# passes through the proxy. Run from anywhere; needs target/debug/brook, kcat and .venv.
#
# usage: tests/clients/capture_all.sh [CLIENT...]   (default: all)
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
brook="${BROOK:-$root/target/debug/brook}"
python="${PYTHON:-$root/.venv/bin/python}"
golden="$root/broker/tests/golden"
clients=("$@")
[ ${#clients[@]} -gt 0 ] || clients=(kcat confluent kafka_python kafka_python_pinned aiokafka)

[ -x "$brook" ] || { echo "missing $brook: run cargo build" >&2; exit 1; }
work="$(mktemp -d)"
proxy_pid=""
broker_pid=""
cleanup() {
    [ -z "$broker_pid" ] || kill "$broker_pid" 2>/dev/null || true
    [ -z "$proxy_pid" ] || kill "$proxy_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Waits (bounded) until a log file contains a pattern.
wait_for() {
    local file="$1" pattern="$2"
    for _ in $(seq 1 300); do
        grep -q "$pattern" "$file" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "timed out waiting for '$pattern' in $file" >&2
    cat "$file" >&2
    return 1
}

# kcat: metadata, a gzip produce with keys and duplicate-key headers, a consume to the end.
run_kcat() {
    local b="$1" t=golden-kcat
    shift
    kcat -b "$b" "$@" -L -t "$t" >/dev/null
    printf 'k1:value-1\nk2:value-2\nk3:value-3\n' |
        kcat -b "$b" "$@" -P -t "$t" -z gzip -K: -H h=1 -H seq=7 -H h=2 -X acks=all
    kcat -b "$b" "$@" -C -t "$t" -o beginning -e -q >/dev/null
    kcat -b "$b" "$@" -L >/dev/null
}

for client in "${clients[@]}"; do
    out="$golden/$client"
    rm -rf "$out"
    mkdir -p "$out" "$work/$client"
    "$python" -u "$root/tests/clients/capture_proxy.py" --out "$out" --dedupe >"$work/$client/proxy.out" 2>"$work/$client/proxy.err" &
    proxy_pid=$!
    wait_for "$work/$client/proxy.out" '^[0-9]'
    port="$(head -n1 "$work/$client/proxy.out")"
    "$brook" serve --data-dir "$work/$client/data" --kafka-listen "127.0.0.2:$port" \
        --advertised-host 127.0.0.1 >"$work/$client/broker.log" 2>&1 &
    broker_pid=$!
    wait_for "$work/$client/broker.log" 'broker started'
    bootstrap="127.0.0.1:$port"
    case "$client" in
        kcat) run_kcat "$bootstrap" ;;
        *) (cd "$root/tests/clients" && "$python" capture_sessions.py "$client" "$bootstrap") ;;
    esac
    kill "$broker_pid"; wait "$broker_pid" || true; broker_pid=""
    kill "$proxy_pid"; wait "$proxy_pid" || true; proxy_pid=""
    if [ -s "$work/$client/proxy.err" ]; then
        echo "proxy errors for $client:" >&2
        cat "$work/$client/proxy.err" >&2
    fi
    echo "$client: $(ls "$out" | grep -c '\.req$') requests, $(du -sh "$out" | cut -f1)"
done
