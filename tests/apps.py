"""Applications used by the server tests (loaded with --app tests.apps:Name or config.app)."""

from wsup.app import App


class CrashApp(App):
    """Echoes, but crashes on the message "crash"."""

    def handle_in(self, conn, data):
        if data == "crash":
            raise RuntimeError("the app crashed on purpose")
        conn.send(data)


class ControlApp(App):
    """Echoes; "close:CODE" closes with that code; pushes what other actors send."""

    def init(self, conn):
        conn.send(f"hello {conn.connection_id} {conn.path} {conn.subprotocol}")

    def handle_in(self, conn, data):
        if isinstance(data, str) and data.startswith("close:"):
            conn.close(int(data[6:]), "asked to")
        elif isinstance(data, str) and data.startswith("tell:"):     # tell:<connection id>:<text>
            _, to, text = data.split(":", 2)
            conn.tell(to, text)
        elif data == "address":
            import pickle
            conn.send(pickle.dumps(conn.address))
        else:
            conn.send(data)

    def handle_info(self, conn, message):
        conn.send(f"pushed: {message}")


class PickySubprotocolApp(App):
    @staticmethod
    def select_subprotocol(offered):
        return "v2.wsup" if "v2.wsup" in offered else None


class PushApp(App):
    """After "start", pushes a compressible message every few ms until closed."""

    def handle_in(self, conn, data):
        if data == "start":
            conn.send_after(0, "tick")
        else:
            conn.send(data)

    def handle_info(self, conn, message):
        if message == "tick" and conn.send("pushed " + "lorem ipsum dolor " * 200):
            conn.send_after(0.002, "tick")


class BrowserApp(App):
    """Echoes; logs the browser's final report as browser.result."""

    def handle_in(self, conn, data):
        if isinstance(data, str) and data.startswith("RESULT "):
            from supervisors import get_logger
            get_logger().info("browser.result", result=data[7:])
        else:
            conn.send(data)


class RecordApp(App):
    """Logs every message it receives as app.received."""

    def handle_in(self, conn, data):
        from supervisors import get_logger
        get_logger().info("app.received", data=data if isinstance(data, str) else data.hex())


class PubSubApp(App):
    """Pub/sub by text commands: "sub:T", "unsub:T", "pub:T:text", "pubx:T:text"
    (excluding itself), "pubb:T:text" (binary), "topics", "bad:topic" / "bad:message"
    (a publish the API refuses: the error comes back as text), "crash", "address" and
    "tella:<hex address>:text" (conn.tell to that address, which arrives as "told text"); published
    messages arrive as they were published.  Says "hello <id>" first."""

    def init(self, conn):
        conn.send(f"hello {conn.connection_id}")

    def handle_in(self, conn, data):
        cmd, _, rest = data.partition(":") if isinstance(data, str) else ("", "", "")
        if cmd == "sub":
            conn.send(f"subscribed {rest} {conn.subscribe(rest)}")
        elif cmd == "unsub":
            conn.send(f"unsubscribed {rest} {conn.unsubscribe(rest)}")
        elif cmd in ("pub", "pubx", "pubb"):
            topic, _, text = rest.partition(":")
            n = conn.publish(topic, text.encode() if cmd == "pubb" else text, exclude_self=cmd == "pubx")
            conn.send(f"published {n}")
        elif cmd == "topics":
            conn.send("topics " + ",".join(sorted(conn.topics)))
        elif cmd == "bad":
            try:
                conn.publish(123 if rest == "topic" else "t", {"not": "text"} if rest == "message" else "x")
            except (TypeError, ValueError) as exc:
                conn.send(f"error {type(exc).__name__}: {exc}")
        elif data == "crash":
            raise RuntimeError("the app crashed on purpose")
        elif data == "address":          # this connection's address, pickled, as hex
            import pickle
            conn.send("address " + pickle.dumps(conn.address).hex())
        elif cmd == "tella":             # tella:<hex address>:<text>: to that connection, any node
            import pickle
            to, _, text = rest.partition(":")
            conn.tell(pickle.loads(bytes.fromhex(to)), text)
        else:
            conn.send(data)

    def handle_info(self, conn, message):
        conn.send(f"told {message}")
