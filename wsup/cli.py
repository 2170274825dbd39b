"""The ``wsup`` command."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from supervisors import LogConfig


def _size(text: str) -> int:
    """1048576, 1024k, 1m, 1MiB ..."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(t[-1:], 1)
    if t[-1:] in "kmg":
        t = t[:-1]
    value = int(float(t) * mult)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def _seconds_or_off(text: str) -> float | None:
    if text.lower() in ("0", "off", "none", "no"):
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0 (or 'off')")
    return value


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="run the WebSocket server",
        description="Run the supervised WebSocket server. Prints 'listening on ws://HOST:PORT' (wss:// with --certfile) when "
                    "ready; SIGTERM or SIGINT stops it gracefully (1001 to every client, closing "
                    "handshakes up to --shutdown-timeout) and it exits 0.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 picks a free one)")
    p.add_argument("--app", default="wsup.app:EchoApp",
                   help="application class, package.module:Class (default: the echo app)")
    p.add_argument("--app-dir", default=".", help="look for --app's module here first (default: .)")
    p.add_argument("--log-file", default=None, help="append JSON-lines lifecycle log here (default: stderr)")
    p.add_argument("--log-format", choices=("json", "console"), default="json", help="log format (default json)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    p.add_argument("--max-connections", type=int, default=1000,
                   help="concurrent connections; more get HTTP 503 (default 1000)")
    p.add_argument("--certfile", default=None, help="serve wss:// with this certificate chain (PEM)")
    p.add_argument("--keyfile", default=None, help="the certificate's private key (PEM; default: in --certfile)")
    p.add_argument("--workers", type=int, default=None, metavar="K",
                   help="worker processes, each serving its share of the connections as in-process "
                        "actors (default: one per CPU)")
    p.add_argument("--max-message-size", type=_size, default=1 << 20,
                   help="largest message accepted, after reassembly; larger -> close 1009 (default 1MiB)")
    p.add_argument("--max-frame-size", type=_size, default=None,
                   help="largest single frame; larger -> close 1009 (default: only the message limit)")
    p.add_argument("--idle-timeout", type=_seconds_or_off, default=None,
                   help="close (1001) a connection silent this many seconds (default off)")
    p.add_argument("--ping-interval", type=_seconds_or_off, default=20.0,
                   help="send a keepalive ping this often, seconds (default 20; 'off')")
    p.add_argument("--ping-timeout", type=_seconds_or_off, default=20.0,
                   help="drop a connection whose pong is this late, seconds (default 20)")
    p.add_argument("--close-timeout", type=float, default=5.0,
                   help="wait this long for the client's close frame (default 5)")
    p.add_argument("--max-pending-handshakes", type=int, default=10000, metavar="N",
                   help="worker layout: connections per worker not yet upgraded; more are closed (default 10000)")
    p.add_argument("--handshake-timeout", type=float, default=10.0,
                   help="a client must complete its upgrade request within this (default 10)")
    p.add_argument("--shutdown-timeout", type=float, default=10.0,
                   help="on SIGTERM, wait this long for clients' closing handshakes (default 10)")
    p.add_argument("--compression-shutdown-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="a connection's CompressionActor asked to stop is SIGKILLed after this long "
                        "(default 30; it stops in milliseconds unless the machine is saturated)")
    p.add_argument("--send-timeout", type=float, default=30.0,
                   help="drop a client that reads nothing for this long while we write (default 30)")
    p.add_argument("--origin", action="append", default=[], metavar="ORIGIN",
                   help="allowed Origin (repeatable; default: any); others get HTTP 403")
    p.add_argument("--subprotocol", action="append", default=[], metavar="NAME",
                   help="subprotocol the server speaks (repeatable, by preference)")
    p.add_argument("--backlog", type=int, default=1024, help="listen backlog (default 1024)")
    p.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="serve /metrics (Prometheus), /healthz, /readyz and the live page of the supervision "
                        "tree (/) on this port (0: a free one; default: off) — docs/observability.md")
    p.add_argument("--metrics-host", default="127.0.0.1",
                   help="address of the metrics port (default 127.0.0.1; it is unauthenticated)")
    p.add_argument("--gc-thaw-every", type=_seconds_or_off, default=60.0, metavar="SECONDS",
                   help="each worker freezes what survives a full garbage collection (later ones scan only "
                        "newer objects: short pauses with many connections) and thaws and collects "
                        "everything this often (default 60; 'off': CPython's default collector)")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="inject a fault: POINT:raise|exit|hang[:always|once|nth=N|every=N|p=P,seed=S] "
                        "(repeatable; see docs/faults.md)")
    c = p.add_argument_group("cluster: pub/sub across nodes, a Thespian convention (docs/cluster.md)")
    c.add_argument("--cluster-address", default=None, metavar="IP:PORT",
                   help="join a cluster: this node's actor system binds IP (every socket of it) with its "
                        "admin on PORT; without --cluster-leader this node leads (default: no cluster)")
    c.add_argument("--cluster-leader", default=None, metavar="IP:PORT",
                   help="the --cluster-address of the node that leads the convention")
    c.add_argument("--cluster-allow-network", action="store_true",
                   help="allow a non-loopback cluster address or leader. Thespian's transport is "
                        "unauthenticated pickle: use a private network only")
    c.add_argument("--cluster-heartbeat", type=float, default=1.0, metavar="SECONDS",
                   help="members re-register with the leader this often; a dead node is dropped after "
                        "~3 of them (default 1)")
    z = p.add_argument_group("permessage-deflate (RFC 7692)")
    z.add_argument("--compression", action=argparse.BooleanOptionalAction, default=True,
                   help="negotiate permessage-deflate with clients that offer it (default on)")
    z.add_argument("--compression-level", type=int, default=1,
                   help="zlib level 0-9 (default 1, the fastest; 6 for ~3-10%% fewer bytes at ~2x the CPU)")
    z.add_argument("--compression-mem-level", type=int, default=5,
                   help="zlib memLevel 1-9: deflate state memory (default 5)")
    z.add_argument("--compression-window-bits", type=int, default=12,
                   help="preferred LZ77 window, 8-15, both directions: memory per connection (default 12)")
    z.add_argument("--compression-threshold", type=int, default=64,
                   help="messages shorter than this many bytes are sent uncompressed (default 64)")
    z.add_argument("--max-inflate-ratio", type=float, default=25.0,
                   help="close 1009 when a message inflates more than this many times its compressed "
                        "size (checked past 1 MiB of output; default 25; 0 = off)")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from wscore.config import ServerConfig
    from wscore.deflate import DeflateSettings
    from wsup.server import Server, print_ready

    config = ServerConfig(
        host=args.host, port=args.port, app=args.app, max_connections=args.max_connections,
        **({} if args.workers is None else {"workers": args.workers}),
        certfile=args.certfile, keyfile=args.keyfile,
        max_message_size=args.max_message_size, max_frame_size=args.max_frame_size,
        idle_timeout=args.idle_timeout, ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout or 20.0, close_timeout=args.close_timeout,
        handshake_timeout=args.handshake_timeout, max_pending_handshakes=args.max_pending_handshakes, shutdown_timeout=args.shutdown_timeout,
        send_timeout=args.send_timeout, compression_shutdown_timeout=args.compression_shutdown_timeout,
        origins=tuple(args.origin),
        subprotocols=tuple(args.subprotocol), backlog=args.backlog,
        metrics_port=args.metrics_port, metrics_host=args.metrics_host,
        gc_thaw_every=args.gc_thaw_every,
        cluster_address=args.cluster_address, cluster_leader=args.cluster_leader,
        cluster_allow_network=args.cluster_allow_network, cluster_heartbeat=args.cluster_heartbeat,
        compression=DeflateSettings(enabled=args.compression, level=args.compression_level,
                                    mem_level=args.compression_mem_level,
                                    window_bits=args.compression_window_bits,
                                    threshold=args.compression_threshold,
                                    max_inflate_ratio=args.max_inflate_ratio),
        log=LogConfig(path=args.log_file, format=args.log_format, level=args.log_level))
    app_dir = os.path.abspath(args.app_dir)
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)     # as uvicorn's --app-dir; the workers inherit it
    try:
        config.check()
        from wscore.app import load_app
        load_app(config.app)
        if args.fault:
            from supervisors import faults
            faults.configure(args.fault)
    except (ValueError, ImportError, AttributeError) as exc:
        print(f"wsup serve: {exc}", file=sys.stderr)
        return 2
    server = Server(config)
    return server.serve_forever(on_ready=lambda address: print_ready(address, bool(config.certfile),
                                                                     server.metrics_address))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wsup", description="A supervised WebSocket server.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    for module in ("wsup.tools.logs", "wsup.tools.chaos", "wsup.tools.bench", "wsup.tools.control",
                   "wsup.tools.top"):
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
