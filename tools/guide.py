"""The guide's machinery: what the docs' markdown may say beyond plain markdown, read in one place.

Used twice: by MkDocs as a hook (``hooks:`` in mkdocs.yml) when the site is built, and by the tests
(tests/docs/) that run the guide's examples and check its two languages against each other.

Three additions to markdown, each checked so that the docs cannot silently go stale:

* ``<!-- run -->`` (or ``<!-- run: slow -->``) on the line before a fenced ``console``, ``pycon`` or
  ``python`` block marks it runnable: tests/docs/test_guide_examples.py executes it and compares what it
  prints with what the block shows (doctest rules: ``...`` matches anything, whitespace is normalised).
  ``<!-- run: figure=out/attention.png -->`` (options separated by commas) also checks that the block
  leaves that image behind: a PNG or SVG of a sensible size.
* ``[text](src:zhixing/nn/attention.py#MultiHeadAttention.forward)`` links to the lines of a symbol (a
  function, class or method, found with ``ast`` at build time) or, without ``#``, to a whole file. The
  site carries a page per linked file with numbered lines; a symbol that no longer exists fails the build.
  Plain relative links out of docs/ into the repository (``../zhixing/ngram/model.py``,
  ``../benchmarks/RESULTS.md``) are served the same way.
* ``<!-- results: Heading text -->`` on a line of its own is replaced by that section of
  benchmarks/RESULTS.md (up to the next heading of the same or a higher level), so the guide's tables are
  the measured ones; a heading that no longer exists fails the build.
"""

from __future__ import annotations

import ast
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
RESULTS = REPO / "benchmarks" / "RESULTS.md"

RUN_MARK = re.compile(r"^<!--\s*run(?::\s*(?P<opts>[^>]*?))?\s*-->\s*$")
RESULTS_MARK = re.compile(r"^<!--\s*results:\s*(?P<heading>.+?)\s*-->\s*$")
SRC_LINK = re.compile(r"\]\(src:(?P<path>[^)#\s]+)(?:#(?P<symbol>[\w.]+))?\)")
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")
HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>.+?)\s*#*\s*$")
RUN_LANGS = ("console", "pycon", "python")
SOURCE_DIR = "source"  # where the site keeps its pages of numbered source lines


class GuideError(ValueError):
    """A docs page says something its machinery cannot honour (a bad marker, a missing symbol)."""


# --------------------------------------------------------------------------------------------- reading


@dataclass
class Block:
    """One runnable fenced block: where it is, its language, its options and its text."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    opts: frozenset[str] = field(default_factory=frozenset)

    @property
    def slow(self) -> bool:
        return "slow" in self.opts

    @property
    def figures(self) -> list[str]:
        """Image files the block must leave behind (``figure=PATH``, relative to the working directory)."""
        return sorted(o.split("=", 1)[1] for o in self.opts if o.startswith("figure="))

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def _lines_outside_fences(text: str):
    """Yield (line number, line, inside_fence) so headings inside code blocks are not taken as headings."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line.strip())
        if fence is None and match:
            fence = match["fence"]
            yield number, line, True
            continue
        if fence is not None:
            if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                fence = None
            yield number, line, True
            continue
        yield number, line, False


def runnable_blocks(path: Path) -> list[Block]:
    """The blocks of one page marked ``<!-- run -->``, in page order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        mark = RUN_MARK.match(lines[i].strip())
        if not mark:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        fence = FENCE.match(lines[j].strip()) if j < len(lines) else None
        if fence is None:
            raise GuideError(f"{path}:{i + 1}: <!-- run --> must stand right before a fenced code block")
        lang = (fence["info"].split() or [""])[0].lstrip(".").lower()
        if lang not in RUN_LANGS:
            raise GuideError(f"{path}:{j + 1}: a runnable block must be one of {', '.join(RUN_LANGS)}, "
                             f"got {lang or 'no language'!r}")
        indent = len(lines[j]) - len(lines[j].lstrip())
        body = []
        k = j + 1
        while k < len(lines) and not (lines[k].strip().startswith(fence["fence"])
                                      and not lines[k].strip().strip(fence["fence"][0])):
            body.append(lines[k][indent:])
            k += 1
        if k == len(lines):
            raise GuideError(f"{path}:{j + 1}: this code block is never closed")
        opts = frozenset(o.strip() for o in (mark["opts"] or "").split(",") if o.strip())
        unknown = {o for o in opts if o != "slow" and not o.startswith("figure=")}
        if unknown:
            raise GuideError(f"{path}:{i + 1}: unknown run option(s) {sorted(unknown)}; "
                             "known: slow, figure=PATH")
        blocks.append(Block(path, j + 1, lang, "\n".join(body) + "\n", opts))
        i = k + 1
    return blocks


def headings(path: Path) -> list[tuple[int, str]]:
    """(level, text) of every markdown heading outside code blocks."""
    out = []
    for _, line, fenced in _lines_outside_fences(path.read_text(encoding="utf-8")):
        match = None if fenced else HEADING.match(line)
        if match:
            out.append((len(match["hashes"]), match["text"]))
    return out


def src_links(text: str) -> list[tuple[str, str | None]]:
    return [(m["path"], m["symbol"]) for m in SRC_LINK.finditer(text)]


def results_includes(text: str) -> list[str]:
    return [m["heading"] for line in text.splitlines() if (m := RESULTS_MARK.match(line.strip()))]


def images(text: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)\s]+)", text)


# ----------------------------------------------------------------------------------------- resolving


def symbol_lines(path: str, symbol: str | None) -> tuple[int, int]:
    """The first and last line of ``symbol`` (``name`` or ``Class.method``) in the repository file."""
    file = REPO / path
    if not file.is_file():
        raise GuideError(f"src:{path}: no such file in the repository")
    if symbol is None:
        return 1, len(file.read_text(encoding="utf-8").splitlines())
    scope: list[ast.stmt] = ast.parse(file.read_text(encoding="utf-8")).body
    node = None
    for part in symbol.split("."):
        found = [n for n in scope if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                 and n.name == part]
        if not found:
            found = [n for n in scope if isinstance(n, ast.Assign | ast.AnnAssign)
                     and part in {t.id for t in _targets(n) if isinstance(t, ast.Name)}]
        if not found:
            raise GuideError(f"src:{path}#{symbol}: {part!r} is not defined there")
        node = found[0]
        scope = getattr(node, "body", [])
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return first, node.end_lineno or node.lineno


def _targets(node):
    return node.targets if isinstance(node, ast.Assign) else [node.target]


def results_section(heading: str) -> str:
    """The body of the RESULTS.md section titled ``heading``, its sub-headings turned into bold lines."""
    lines = RESULTS.read_text(encoding="utf-8").splitlines()
    start = level = None
    body = []
    for number, line, fenced in _lines_outside_fences("\n".join(lines)):
        match = None if fenced else HEADING.match(line)
        if start is None:
            if match and match["text"].strip() == heading.strip():
                start, level = number, len(match["hashes"])
            continue
        if match and len(match["hashes"]) <= level:
            break
        body.append(f"**{match['text']}**" if match else line)
    if start is None:
        raise GuideError(f"benchmarks/RESULTS.md has no section titled {heading!r}")
    return "\n".join(body).strip() + "\n"


def source_page(path: str) -> str:
    """The site path (relative to docs/) of the page that shows the repository file ``path``."""
    # Dots replaced: the i18n plugin would read "attention.py.md" as a page in a language called "py".
    # (and MkDocs skips "__init__..." names).
    return f"{SOURCE_DIR}/{path.replace('__init__', 'init').replace('.', '-')}.md"


def _relative(from_page: str, to_page: str) -> str:
    return posixpath.relpath(to_page, posixpath.dirname(from_page) or ".")


def rewrite(markdown: str, page: str) -> tuple[str, set[str]]:
    """The page's markdown as MkDocs should see it, and the repository files it links to.

    ``page`` is the page's path relative to docs/ (``guide/02-attention.md``).
    """
    linked: set[str] = set()

    def src(match):
        path, symbol = match["path"], match["symbol"]
        first, last = symbol_lines(path, symbol)
        linked.add(path)
        anchor = f"#__codelineno-0-{first}" if symbol else ""
        return f"]({_relative(page, source_page(path))}{anchor})"

    out = []
    for line in markdown.splitlines():
        mark = RESULTS_MARK.match(line.strip())
        if mark:  # its links were written relative to benchmarks/: re-pointed from this page
            text, files = relink(results_section(mark["heading"]), "benchmarks/RESULTS.md", page)
            linked |= files
            out.append(text)
            continue
        line, files = relink(line, f"docs/{page}", page)  # links out of docs/ into the repository
        linked |= files
        out.append(SRC_LINK.sub(src, line))
    return "\n".join(out) + "\n", linked


def relink(text: str, origin: str, page: str) -> tuple[str, set[str]]:
    """``text`` written at repository path ``origin`` (a docs page itself, or e.g. benchmarks/RESULTS.md),
    its relative links checked and re-pointed so they work from the docs page ``page``; and the repository
    files (outside docs/; a package: its __init__.py) they name, which get pages of their own."""
    linked: set[str] = set()

    def one(match):
        target, anchor = match["target"], match["anchor"] or ""
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(origin), target))
        if resolved.startswith(".."):  # out of the repository: not ours to check
            return match[0]
        if not resolved.startswith(f"docs/{SOURCE_DIR}/"):  # generated pages are checked by MkDocs
            if not (REPO / resolved).exists():
                raise GuideError(f"{origin}: the link {target!r} points at {resolved}, which does not exist")
            if (REPO / resolved).is_dir() and not resolved.startswith("docs/"):  # a package: its __init__.py
                if not (REPO / resolved / "__init__.py").is_file():
                    raise GuideError(f"{origin}: the link {target!r} is a directory without an __init__.py")
                resolved = resolved.rstrip("/") + "/__init__.py"
        if resolved.startswith("docs/"):
            return f"]({_relative(page, resolved[len('docs/'):])}{anchor})"
        linked.add(resolved)
        return f"]({_relative(page, source_page(resolved))}{anchor})"

    out = re.sub(r"\]\((?P<target>(?!https?:|#|mailto:|src:)[^)#\s]+)(?P<anchor>#[^)\s]*)?\)", one, text)
    return out, linked


def render_source(path: str) -> str:
    """A page of numbered lines for one repository file (``RESULTS.md`` is shown as markdown)."""
    text = (REPO / path).read_text(encoding="utf-8")
    if path.endswith(".md"):  # a markdown file out of docs/: its relative links re-pointed from its new place
        return relink(text, path, source_page(path))[0]
    lang = {".py": "python", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}.get(Path(path).suffix, "text")
    fence = "`" * max(4, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return f"# `{path}`\n\n{fence}{lang} linenums=\"1\"\n{text}\n{fence}\n"


# ------------------------------------------------------------------------------------- the MkDocs hook

def on_config(config):
    """Write a page of numbered lines for every repository file the docs link to, before MkDocs reads
    docs/ (into docs/source/, which git ignores): generated pages would be dropped by the i18n plugin."""
    import shutil

    docs_dir = Path(config["docs_dir"])
    wanted: set[str] = set()
    for file in sorted(docs_dir.rglob("*.md")):
        page = file.relative_to(docs_dir).as_posix()
        if not page.startswith(SOURCE_DIR + "/"):
            wanted |= _checked(rewrite, file.read_text(encoding="utf-8"), page)[1]
    for path in [p for p in wanted if p.endswith(".md")]:  # RESULTS.md's own links need pages too
        wanted |= _checked(relink, (REPO / path).read_text(encoding="utf-8"), path, source_page(path))[1]
    shutil.rmtree(docs_dir / SOURCE_DIR, ignore_errors=True)
    for path in sorted(wanted):
        target = docs_dir / source_page(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render_source(path), encoding="utf-8")
    return config


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri.startswith(SOURCE_DIR + "/"):
        return markdown
    return _checked(rewrite, markdown, page.file.src_uri)[0]


def _checked(function, *args):
    """Run ``function``; a GuideError stops the build with its one-line message, not a traceback."""
    from mkdocs.exceptions import PluginError

    try:
        return function(*args)
    except GuideError as error:
        raise PluginError(str(error)) from None
