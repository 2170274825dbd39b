"""Minimal echo servers of the peers wsup is compared with.

    python bench/peers.py websockets --port 0     # websockets' asyncio server
    python bench/peers.py aiohttp --port 0        # aiohttp.web
    python bench/peers.py websockets --broadcast  # the broadcast part's protocol (below)

Each prints "listening on ws://127.0.0.1:PORT" when ready, echoes every text
and binary message, negotiates permessage-deflate with clients that offer it
(each library's defaults: websockets 12-bit windows, memLevel 5; aiohttp 15-bit
windows), sends no keepalive pings (as `wsup serve --ping-interval off`),
and exits 0 on SIGTERM or SIGINT.  Needs the `bench` extra for aiohttp
(`pip install -e '.[bench]'`).

``--broadcast`` (websockets only): the protocol of ``bench/broadcast_app.py``,
wsup's side of ``wsup bench --parts broadcast``: a connection to ``/sub`` is a
subscriber; every message received on a ``/pub`` connection goes to every
subscriber with ``websockets.broadcast()`` (compressed per connection, as
wsup does); anything else echoes (a subscriber too).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
import sys


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    return stop


def _ready(port: int) -> None:
    print(f"listening on ws://127.0.0.1:{port}", flush=True)


async def run_websockets(host: str, port: int, backlog: int, max_size: int, broadcast: bool = False) -> None:
    from websockets.asyncio.server import broadcast as push
    from websockets.asyncio.server import serve

    subscribers: set = set()

    async def echo(ws) -> None:
        path = ws.request.path if broadcast else ""
        if path == "/pub":
            async for message in ws:
                push(subscribers, message)
            return
        if path == "/sub":
            subscribers.add(ws)
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            subscribers.discard(ws)

    stop = _stop_event()
    # compression="deflate" is the default: permessage-deflate when the client offers it.
    async with serve(echo, host, port, compression="deflate", ping_interval=None,
                     max_size=max_size, backlog=backlog) as server:
        _ready(server.sockets[0].getsockname()[1])
        await stop.wait()


async def run_aiohttp(host: str, port: int, backlog: int, max_size: int) -> None:
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=True, heartbeat=None, max_msg_size=max_size)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=backlog)
    await site.start()
    stop = _stop_event()
    _ready(site._server.sockets[0].getsockname()[1])
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("server", choices=("websockets", "aiohttp"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--backlog", type=int, default=1024)
    p.add_argument("--max-size", type=int, default=1 << 20, help="largest message (default 1 MiB, as wsup)")
    p.add_argument("--broadcast", action="store_true",
                   help="websockets: /sub subscribes, /pub broadcasts to the subscribers (websockets.broadcast)")
    args = p.parse_args(argv)
    if args.broadcast and args.server != "websockets":
        p.error("--broadcast: websockets only")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))   # as wsup serve does
    if args.server == "websockets":
        asyncio.run(run_websockets(args.host, args.port, args.backlog, args.max_size, args.broadcast))
    else:
        asyncio.run(run_aiohttp(args.host, args.port, args.backlog, args.max_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
