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
