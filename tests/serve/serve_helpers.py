"""Helpers of the serving tests (a module with its own name: `conftest` is ambiguous across test folders)."""

from __future__ import annotations

TEXT = [
    "知行合一，知是行的主意，行是知的功夫。",
    "Knowing and doing are one.",
    "你好，世界！Hello.",
    "The quick brown fox jumps over the lazy dog.",
    "User: hi\nAssistant: hello there",
] * 20
WORDS = ["alice", "bob", "paris", "london", "went", "to", "saw", "the", "city", "and", "met", "in"]

API_KEY = "sk-zhixing-test"


class LiveServer:
    """A uvicorn server in a thread on 127.0.0.1 at a free port."""

    def __init__(self, app):
        import socket
        import threading

        import uvicorn

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=5
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        import time

        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(15)
