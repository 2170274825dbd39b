"""``wsup top``: the live view in a terminal, from the same feed as the page.

It connects to the metrics port's ``/live`` WebSocket (a client made with
wsproto) and redraws, at every summary the server pushes (each second): the
workers with their pid, connections, handshakes in progress, zlib contexts,
restarts and rates, and the last supervision events.

    wsup top http://127.0.0.1:9100          # the --metrics-port of a running server
    wsup top 127.0.0.1:9100 --once          # one summary, printed, then exit
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections import deque
from typing import Iterator
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, RejectConnection, Request, TextMessage


def feed(host: str, port: int, timeout: float = 10.0) -> Iterator[dict]:
    """The feed's messages, as they come (ends when the server closes it)."""
    ws = WSConnection(ConnectionType.CLIENT)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(ws.send(Request(host=f"{host}:{port}", target="/live")))
        parts: list[str] = []
        while True:
            data = sock.recv(65536)
            ws.receive_data(data or None)
            for event in ws.events():
                if isinstance(event, RejectConnection):
                    raise ConnectionError(f"the server refused the feed (HTTP {event.status_code})")
                if isinstance(event, CloseConnection):
                    return
                if isinstance(event, TextMessage):
                    parts.append(event.data)
                    if event.message_finished:
                        yield json.loads("".join(parts))
                        parts = []
                elif isinstance(event, (AcceptConnection, Message)):
                    pass
            if not data:
                return


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:.1f}"


def render(summary: dict, events: deque) -> str:
    r = summary.get("rates", {})
    lines = [f"wsup — {summary['status']}   {summary['connections_open']:,} connections open   "
             f"{_rate(r.get('upgraded', 0))} conn/s   {_rate(r.get('messages_in', 0))} msgs in/s   "
             f"{_rate(r.get('messages_out', 0))} msgs out/s   observer pid {summary['observer_pid']}",
             "",
             f"{'worker':<10}{'pid':>8}{'state':>10}{'conns':>9}{'handshk':>9}{'zlib':>8}{'restarts':>10}"
             f"{'conn/s':>9}{'in/s':>10}{'out/s':>10}"]
    for w in summary["workers"]:
        wr = w.get("rates", {})
        state = "stopping" if w["stopping"] else "up" if w["up"] else "DOWN"
        lines.append(f"{'worker-%d' % w['index']:<10}{w['pid'] or '-':>8}{state:>10}{w['connections_open']:>9,}"
                     f"{w['pending_handshakes']:>9,}{w['contexts_open']:>8,}{w['restarts']:>10}"
                     f"{_rate(wr.get('upgraded', 0)):>9}{_rate(wr.get('messages_in', 0)):>10}"
                     f"{_rate(wr.get('messages_out', 0)):>10}")
    lines += ["", "last supervision events:"]
    for e in list(events)[-10:]:
        t = time.strftime("%H:%M:%S", time.localtime(e.get("t", 0)))
        who = f" {e['supervisor']}/{e['child_id']}" if "supervisor" in e else ""
        why = f" ({e['reason']})" if "reason" in e else ""
        conn = f" connection {e['connection_id']}" if "connection_id" in e else ""
        lines.append(f"  {t} worker-{e.get('worker')} {e['event']}{who}{why}{conn}")
    if not events:
        lines.append("  (none)")
    return "\n".join(lines)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("top", help="the live view of a running server in the terminal (its --metrics-port)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("address", help="the server's metrics address: http://HOST:PORT or HOST:PORT")
    p.add_argument("--once", action="store_true", help="print one summary and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    url = urlsplit(args.address if "//" in args.address else "//" + args.address)
    host, port = url.hostname or "127.0.0.1", url.port
    if port is None:
        print("wsup top: give the metrics port (HOST:PORT)", file=sys.stderr)
        return 2
    events: deque = deque(maxlen=50)
    try:
        for msg in feed(host, port):
            if msg["type"] == "hello":
                events.extend(msg["events"])
            elif msg["type"] == "event":
                events.append(msg)
            elif msg["type"] == "summary":
                text = render(msg, events)
                if args.once:
                    print(text)
                    return 0
                sys.stdout.write("\x1b[H\x1b[2J" + text + "\n")
                sys.stdout.flush()
    except (OSError, ConnectionError) as exc:
        print(f"wsup top: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    print("wsup top: the server closed the feed", file=sys.stderr)
    return 1
