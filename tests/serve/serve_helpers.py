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


def chromium_or_skip() -> str:
    """The system Chromium the browser tests drive (Playwright never downloads one), or skip the module."""
    import shutil

    import pytest

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium on PATH (make install adds it: apt-get install chromium)",
                    allow_module_level=True)
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    return path


class BrowserPage:
    """`with BrowserPage(url, api_key) as page:` a page of headless Chromium opened at `url` (the web UI's
    API key in localStorage when given); on leaving, no JavaScript error may have been raised on it."""

    def __init__(self, url: str, api_key: str | None = None, timeout_ms: int = 15_000):
        self.url, self.api_key, self.timeout_ms = url, api_key, timeout_ms
        self.errors: list[str] = []

    def __enter__(self):
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=chromium_or_skip(),
                                                 args=["--no-sandbox", "--disable-gpu"])
        ctx = self._browser.new_context(viewport={"width": 1280, "height": 900})
        if self.api_key:
            ctx.add_init_script(f"localStorage.setItem('zhixing-api-key', '{self.api_key}')")
        page = ctx.new_page()
        page.set_default_timeout(self.timeout_ms)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.goto(self.url)
        return page

    def __exit__(self, *exc) -> None:
        self._browser.close()
        self._pw.stop()
        if exc[0] is None:
            assert not self.errors, f"JavaScript errors: {self.errors}"
