"""The Chinese and English pages of the guide say the same things: same sections, same runnable examples,
same source links, same measured tables, same figures. And every link into the source resolves."""

import guide
import pytest

GUIDE = guide.DOCS / "guide"
ENGLISH = sorted(p for p in GUIDE.glob("*.md") if not p.name.endswith(".zh.md"))
PAIRS = [(p, p.with_name(p.stem + ".zh.md")) for p in ENGLISH] + [
    (guide.DOCS / "index.md", guide.DOCS / "index.zh.md")]


def test_the_guide_has_its_chapters():
    assert len(ENGLISH) >= 16, [p.name for p in ENGLISH]


@pytest.mark.parametrize("en,zh", PAIRS, ids=lambda p: p.name)
def test_chinese_twin_matches_the_english_page(en, zh):
    assert zh.is_file(), f"{en.name} has no Chinese twin {zh.name}"
    en_text, zh_text = en.read_text(encoding="utf-8"), zh.read_text(encoding="utf-8")
    assert [lvl for lvl, _ in guide.headings(en)] == [lvl for lvl, _ in guide.headings(zh)], (
        f"{en.name} and {zh.name} have different sections:\n{guide.headings(en)}\n{guide.headings(zh)}")
    strip = lambda blocks: [(b.lang, b.opts, b.text) for b in blocks]
    assert strip(guide.runnable_blocks(en)) == strip(guide.runnable_blocks(zh)), (
        f"{en.name} and {zh.name} run different examples")
    key = lambda link: (link[0], link[1] or "")  # a whole-file link has no symbol
    assert sorted(guide.src_links(en_text), key=key) == sorted(guide.src_links(zh_text), key=key)
    assert guide.results_includes(en_text) == guide.results_includes(zh_text)
    assert sorted(guide.images(en_text)) == sorted(guide.images(zh_text))


@pytest.mark.parametrize("page", sorted(p for p in guide.DOCS.rglob("*.md")
                                        if not p.relative_to(guide.DOCS).as_posix().startswith("source/")),
                         ids=lambda p: p.relative_to(guide.DOCS).as_posix())
def test_links_into_the_source_and_results_resolve(page):
    text = page.read_text(encoding="utf-8")
    guide.rewrite(text, page.relative_to(guide.DOCS).as_posix())  # raises GuideError on a stale reference
    guide.runnable_blocks(page)  # raises on a malformed marker


def test_a_symbol_that_moved_is_reported():
    with pytest.raises(guide.GuideError, match="not defined"):
        guide.symbol_lines("zhixing/nn/attention.py", "NoSuchThing")
    first, last = guide.symbol_lines("zhixing/nn/attention.py", "Attention.forward")
    lines = (guide.REPO / "zhixing/nn/attention.py").read_text().splitlines()
    assert lines[first - 1].lstrip().startswith(("def forward", "@")) and last > first
    with pytest.raises(guide.GuideError, match="no section"):
        guide.results_section("A heading nobody wrote")
