"""The web UI in a real headless Chromium (Playwright, the system's /usr/bin/chromium): the page loads, a
streamed completion appears piece by piece, an NER result is highlighted, the attention view draws for a
chosen layer/head; screenshots are taken and checked to be non-blank."""

from __future__ import annotations

import io

import pytest
from serve_helpers import API_KEY, BrowserPage, chromium_or_skip

pytestmark = pytest.mark.browser

chromium_or_skip()


def not_blank(png: bytes, min_colors: int = 3) -> bool:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    colors = img.getcolors(maxcolors=1 << 20) or []
    return img.size[0] > 50 and img.size[1] > 20 and len(colors) >= min_colors


@pytest.fixture(scope="module")
def page(server):
    with BrowserPage(server.url + "/", API_KEY) as pg:
        pg.wait_for_function("document.querySelectorAll('#gen-model option').length > 0")
        yield pg


def test_page_loads(page, tmp_path):
    assert page.title().startswith("知行")
    assert page.locator("#gen-model option").all_inner_texts() == ["gpt"]
    assert "2 model(s)" in page.locator("#status").inner_text()
    assert not_blank(page.screenshot(path=str(tmp_path / "page.png")))


def test_streamed_completion(page, tmp_path):
    page.fill("#prompt", "Knowing and doing")
    page.fill("#max-tokens", "40")
    page.fill("#temperature", "0")
    # record the output's length at every DOM change: a streamed answer grows in several steps
    page.evaluate("""() => {
        window.__lens = [];
        new MutationObserver(() => window.__lens.push($('#output').textContent.length))
            .observe(document.querySelector('#output'),
                     {childList: true, characterData: true, subtree: true});
    }""")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#usage').textContent.includes('completion')")
    text = page.locator("#output").inner_text()
    lens = [n for n in page.evaluate("window.__lens") if n > 0]
    assert text.strip() and int(page.get_attribute("#output", "data-chunks")) > 1
    assert len(set(lens)) > 1 and lens == sorted(lens)  # appeared piece by piece, only growing
    assert (
        "completion 40 tokens" in page.locator("#usage").inner_text()
        or "finish: stop" in page.locator("#usage").inner_text()
    )
    assert not_blank(page.locator("#playground").screenshot(path=str(tmp_path / "playground.png")))


def test_ner_highlighted(page, tmp_path):
    page.click(".tab[data-tab=tasks]")
    page.select_option("#task", "ner")
    page.wait_for_function("document.querySelector('#task-model').value === 'ner'")
    page.fill("#task-input", "alice went to paris")
    page.click("#task-run")
    page.wait_for_selector("#task-output mark.ent")
    marks = page.locator("#task-output mark.ent")
    assert marks.count() >= 1 and marks.first.get_attribute("data-type") == "PER"
    assert "alice" in page.locator("#task-output").inner_text()
    assert not_blank(page.locator("#task-output").screenshot(path=str(tmp_path / "ner.png")))


@pytest.mark.parametrize("model, heads", [("ner", 2), ("gpt", 4)])
def test_attention_view(page, tmp_path, model, heads):
    page.click(".tab[data-tab=attention]")
    page.select_option("#attn-model", model)
    page.fill("#attn-text", "alice went to paris")
    page.click("#attn-run")
    kind = "encoder" if model == "ner" else "decoder"
    # this model's answer is drawn: its kind is selected and the model view has layers x heads thumbnails
    page.wait_for_function(
        f"document.querySelector('#attn-kind').value === '{kind}' && "
        f"document.querySelectorAll('#model-view canvas').length === {2 * heads}"
    )
    assert page.locator("#attn-layer option").count() == 2
    page.select_option("#attn-layer", "1")
    page.select_option("#attn-head", "0")
    page.wait_for_function(f"document.querySelector('#head-view').dataset.drawn === '{kind}:1:0'")
    inked = page.evaluate("""() => {
        const c = document.querySelector('#head-view');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200) n++;
        return n; }""")
    assert inked > 200  # tokens and lines drawn
    page.locator("#model-view canvas").nth(heads + 1).click()  # layer 1, head 1
    assert page.input_value("#attn-head") == "1"
    assert not_blank(page.locator("#head-view").screenshot(path=str(tmp_path / f"head-{model}.png")))
    assert not_blank(page.locator("#model-view").screenshot(path=str(tmp_path / f"model-{model}.png")), 10)
