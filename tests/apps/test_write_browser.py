"""The writing assistant's page in a real headless Chromium (Playwright, the system's chromium, as
tests/serve/test_browser.py): it loads its models, a continuation streams into the editor piece by piece,
a poem keeps its form, a rewrite reports the guide's view and material suggestions appear."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))  # serve_helpers: LiveServer, API key
from serve_helpers import API_KEY, BrowserPage, LiveServer, chromium_or_skip  # noqa: E402
from write_helpers import poems_file, tiny_classifier, tiny_gpt  # noqa: E402

pytestmark = pytest.mark.browser

chromium_or_skip()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from zhixing.apps.write.materials import MaterialIndex, read_passages
    from zhixing.serve.app import ServeSettings, create_app

    d = tmp_path_factory.mktemp("write-ui")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpt, clf = tiny_gpt(d / "gpt"), tiny_classifier(d / "clf")
    MaterialIndex.build(read_passages(poems_file(d / "poems.jsonl"))).save(d / "index")
    (d / "write.yaml").write_text(f"models:\n  tiny: {gpt}\nguide: {clf}\nindex: index\n", encoding="utf-8")
    app = create_app({"gpt": str(gpt)}, ServeSettings(api_key=API_KEY))
    from zhixing.cli.serve import mount_apps

    mount_apps(app, (f"write={d / 'write.yaml'}",))
    with LiveServer(app) as live:
        yield live


def test_write_page(server, tmp_path):
    from test_browser import not_blank  # noqa: PLC0415 (tests/serve is on the path)

    with BrowserPage(server.url + "/apps/write/", API_KEY) as page:
        page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
        assert page.locator("#model option").all_inner_texts() == ["tiny"]
        assert "positive" in page.locator("#target option").all_inner_texts()

        # a streamed continuation grows the draft in the editor, then material is suggested
        page.fill("#editor", "举头望明月")
        page.fill("#max-new", "12")
        page.fill("#seed", "1")
        page.click("#continue")
        page.wait_for_function("document.querySelector('#status').textContent === 'done'")
        assert page.input_value("#editor").startswith("举头望明月")
        assert len(page.input_value("#editor")) > len("举头望明月")
        assert int(page.get_attribute("#output", "data-chunks")) > 1
        page.wait_for_function("document.querySelectorAll('#hits li').length > 0")
        assert "静夜思" in page.locator("#hits").inner_text()

        # the poetry mode: a five-character quatrain with its acrostic
        page.fill("#editor", "春\n")
        page.select_option("#form", "五言绝句")
        page.fill("#acrostic", "春夏秋冬")
        page.click("#continue")
        page.wait_for_function("document.querySelector('#status').textContent === 'done'")
        lines = page.input_value("#editor").split("\n", 1)[1]
        assert [lines[i] for i in (0, 6, 12, 18)] == list("春夏秋冬")

        # a guided rewrite reports the guide's probability before and after
        page.select_option("#form", "")
        page.fill("#acrostic", "")
        page.fill("#editor", "质量太差了，用了两天就坏")
        page.select_option("#target", "positive")
        page.click("#rewrite")
        page.wait_for_function("document.querySelector('#output').textContent.includes('by the guide')")
        assert page.locator("#output").inner_text().startswith("质量太差了")
        assert not_blank(page.screenshot(path=str(tmp_path / "write.png")))
