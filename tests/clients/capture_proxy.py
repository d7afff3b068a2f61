#!/usr/bin/env python3
"""A recording TCP proxy for Kafka traffic: it captures the request and response frames real
clients exchange with the broker, as golden frames for broker/src/server/golden_tests.rs.

usage: capture_proxy.py --out DIR [--upstream-host HOST] [--upstream-port PORT] [--dedupe]

It listens on 127.0.0.1:0 and prints the port it got as the first stdout line. Every
connection is forwarded to UPSTREAM_HOST:UPSTREAM_PORT; the port defaults to the proxy's own
port, so a broker started afterwards with `--kafka-listen 127.0.0.2:<port> --advertised-host
127.0.0.1` advertises the proxy's address and every connection the clients open (bootstrap and
the ones they make after Metadata) goes through the proxy.

Each request frame (length prefix stripped: api_key i16, api_version i16, correlation_id i32,
...) is written to DIR/<seq>-<api_name>-v<version>.req and its response to the same name with
.resp; seq is the global order of arrival (3 digits). With --dedupe, only the first frame of
each (api, version) is kept, plus every frame of the first ApiVersions exchange (a KIP-511
retry included). It runs until it is sent SIGTERM or SIGINT.
"""

import argparse
import asyncio
import os
import signal
import struct
import sys

# Kafka API keys by number, in snake case.
API_NAMES = {
    0: "produce",
    1: "fetch",
    2: "list_offsets",
    3: "metadata",
    4: "leader_and_isr",
    5: "stop_replica",
    6: "update_metadata",
    7: "controlled_shutdown",
    8: "offset_commit",
    9: "offset_fetch",
    10: "find_coordinator",
    11: "join_group",
    12: "heartbeat",
    13: "leave_group",
    14: "sync_group",
    15: "describe_groups",
    16: "list_groups",
    17: "sasl_handshake",
    18: "api_versions",
    19: "create_topics",
    20: "delete_topics",
    21: "delete_records",
    22: "init_producer_id",
    23: "offset_for_leader_epoch",
    24: "add_partitions_to_txn",
    25: "add_offsets_to_txn",
    26: "end_txn",
    27: "write_txn_markers",
    28: "txn_offset_commit",
    29: "describe_acls",
    30: "create_acls",
    31: "delete_acls",
    32: "describe_configs",
    33: "alter_configs",
    34: "alter_replica_log_dirs",
    35: "describe_log_dirs",
    36: "sasl_authenticate",
    37: "create_partitions",
    38: "create_delegation_token",
    39: "renew_delegation_token",
    40: "expire_delegation_token",
    41: "describe_delegation_token",
    42: "delete_groups",
    43: "elect_leaders",
    44: "incremental_alter_configs",
    45: "alter_partition_reassignments",
    46: "list_partition_reassignments",
    47: "offset_delete",
    48: "describe_client_quotas",
    49: "alter_client_quotas",
    50: "describe_user_scram_credentials",
    51: "alter_user_scram_credentials",
    60: "describe_cluster",
    61: "describe_producers",
    65: "describe_transactions",
    66: "list_transactions",
    68: "consumer_group_heartbeat",
    69: "consumer_group_describe",
}

API_VERSIONS = 18
# A bound on one frame, as the broker's socket.request.max.bytes default bounds requests.
MAX_FRAME_BYTES = 100 * 1024 * 1024


class Recorder:
    """Names, filters and writes frames; shared by every connection of one proxy."""

    def __init__(self, out, dedupe):
        self.out = out
        self.dedupe = dedupe
        self.seq = 0
        self.seen = set()
        # The first ApiVersions exchange stays open until a reply with error code 0 arrives.
        self.first_api_versions_conn = None
        self.first_api_versions_done = False

    def on_request(self, conn_id, frame):
        """Decides whether to keep a request; returns the file stem or None."""
        key, version = struct.unpack(">hh", frame[:4])
        self.seq += 1
        stem = f"{self.seq:03d}-{API_NAMES.get(key, f'api{key}')}-v{version}"
        keep = True
        if key == API_VERSIONS and not self.first_api_versions_done:
            if self.first_api_versions_conn in (None, conn_id):
                self.first_api_versions_conn = conn_id
                self.seen.add((key, version))
                self.write(stem + ".req", frame)
                return stem
        if self.dedupe:
            keep = (key, version) not in self.seen
            self.seen.add((key, version))
        if keep:
            self.write(stem + ".req", frame)
            return stem
        return None

    def on_response(self, conn_id, key, stem, frame):
        """Writes a kept request's response and closes the first ApiVersions exchange."""
        if stem is not None:
            self.write(stem + ".resp", frame)
        if key == API_VERSIONS and conn_id == self.first_api_versions_conn and len(frame) >= 6:
            (error_code,) = struct.unpack(">h", frame[4:6])
            if error_code == 0:
                self.first_api_versions_done = True

    def write(self, name, frame):
        with open(os.path.join(self.out, name), "wb") as f:
            f.write(frame)


async def read_frame(reader):
    """One frame without its length prefix, or None at end of stream."""
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError:
        return None
    (n,) = struct.unpack(">i", head)
    if n < 0 or n > MAX_FRAME_BYTES:
        raise ValueError(f"frame length {n} out of bounds")
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError:
        return None


async def pump_requests(conn_id, recorder, pending, client_r, upstream_w):
    while (frame := await read_frame(client_r)) is not None:
        if len(frame) >= 8:
            key, _, corr = struct.unpack(">hhi", frame[:8])
            pending[corr] = (key, recorder.on_request(conn_id, frame))
        upstream_w.write(struct.pack(">i", len(frame)) + frame)
        await upstream_w.drain()
    upstream_w.close()


async def pump_responses(conn_id, recorder, pending, upstream_r, client_w):
    while (frame := await read_frame(upstream_r)) is not None:
        if len(frame) >= 4:
            (corr,) = struct.unpack(">i", frame[:4])
            key, stem = pending.pop(corr, (None, None))
            recorder.on_response(conn_id, key, stem, frame)
        client_w.write(struct.pack(">i", len(frame)) + frame)
        await client_w.drain()
    client_w.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory the frames are written to")
    ap.add_argument("--upstream-host", default="127.0.0.2")
    ap.add_argument("--upstream-port", type=int, default=0, help="0: the proxy's own port")
    ap.add_argument("--dedupe", action="store_true", help="keep one frame per (api, version)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    recorder = Recorder(args.out, args.dedupe)
    conn_ids = iter(range(1, 1 << 62))
    port = 0

    async def on_client(client_r, client_w):
        conn_id = next(conn_ids)
        try:
            upstream_r, upstream_w = await asyncio.open_connection(args.upstream_host, args.upstream_port or port)
        except OSError as e:
            print(f"capture_proxy: upstream connect failed: {e}", file=sys.stderr, flush=True)
            client_w.close()
            return
        pending = {}
        tasks = [
            asyncio.ensure_future(pump_requests(conn_id, recorder, pending, client_r, upstream_w)),
            asyncio.ensure_future(pump_responses(conn_id, recorder, pending, upstream_r, client_w)),
        ]
        try:
            await asyncio.gather(*tasks)
        except (OSError, ValueError) as e:
            print(f"capture_proxy: connection {conn_id}: {e}", file=sys.stderr, flush=True)
        finally:
            for t in tasks:
                t.cancel()
            client_w.close()
            upstream_w.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
