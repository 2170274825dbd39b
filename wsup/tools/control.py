"""The client side of the workers' control sockets, and ``wsup send``.

Each worker listens on an abstract AF_UNIX socket, same user only, named in
its ``worker.listening`` log record (actors/worker_actor.py): newline-
delimited JSON requests ``info``, ``kill`` (what ``wsup chaos`` uses),
``send`` (a message for one connection's handle_info, routed by its id to
the worker that holds it), ``publish`` (to a topic: every subscriber) and ``gc`` (the worker's cycle-collector counts;
``"collect": true`` runs a full collection first).

    wsup send --server-log wsup.jsonl CONNECTION_ID '{"any": "JSON value"}'
    wsup publish --server-log wsup.jsonl TOPIC 'a text message'
"""

from __future__ import annotations

import argparse
import json
import socket
import sys


def control(name: str, request: dict, timeout: float = 5.0) -> dict:
    """One request to the control socket ``name``; {} if it is gone."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect("\0" + name)
            sock.sendall(json.dumps(request).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                more = sock.recv(65536)
                if not more:
                    return {}
                buf += more
        return json.loads(buf)
    except (OSError, ValueError):
        return {}


def worker_of(line: bytes) -> tuple[str, int] | None:
    """(control socket name, pid) if this log line is a worker's ``worker.listening``."""
    if b'"worker.listening"' not in line:
        return None
    try:
        r = json.loads(line)
    except ValueError:
        return None
    if r.get("event") == "worker.listening" and r.get("control"):
        return r["control"], r["pid"]
    return None


def workers_in_log(path: str) -> dict[str, int]:
    """{control socket name: worker pid} of every worker the log has seen start."""
    with open(path, "rb") as f:
        return dict(w for w in map(worker_of, f) if w is not None)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("send", help="send a message to one connection's handle_info, from outside the server",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server-log", required=True, help="the server's --log-file (where its workers are named)")
    p.add_argument("connection_id")
    p.add_argument("message", help="a JSON value")
    p.set_defaults(func=run_send)
    p = sub.add_parser("publish", help="publish a message to a topic, from outside the server",
                       description="Publish MESSAGE (text; --binary: its UTF-8 bytes as a binary message) to "
                                   "TOPIC: every subscriber, in every worker (and node), gets it.")
    p.add_argument("--server-log", required=True, help="the server's --log-file (where its workers are named)")
    p.add_argument("--binary", action="store_true")
    p.add_argument("topic")
    p.add_argument("message")
    p.set_defaults(func=run_publish)


def run_send(args: argparse.Namespace) -> int:
    try:
        message = json.loads(args.message)
    except ValueError:
        print("wsup send: the message must be a JSON value (quote a string: '\"hi\"')", file=sys.stderr)
        return 2
    # the newest worker that answers routes it (each worker forwards by the id)
    for name in reversed(list(workers_in_log(args.server_log))):
        got = control(name, {"op": "send", "connection_id": args.connection_id, "message": message})
        if got.get("ok"):
            return 0
    print("wsup send: no worker of that server answers", file=sys.stderr)
    return 1


def run_publish(args: argparse.Namespace) -> int:
    # any one worker: it delivers to its subscribers and forwards to the others
    for name in reversed(list(workers_in_log(args.server_log))):
        got = control(name, {"op": "publish", "topic": args.topic, "message": args.message,
                             "binary": args.binary})
        if got.get("ok"):
            return 0
        if got:
            print(f"wsup publish: {got.get('error')}", file=sys.stderr)
            return 2
    print("wsup publish: no worker of that server answers", file=sys.stderr)
    return 1
