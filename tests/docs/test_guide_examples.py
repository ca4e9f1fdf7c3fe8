"""Every block of the docs marked ``<!-- run -->`` runs here and prints what the page says it prints.

A page's blocks run in order in one fresh working directory that looks like the repository root
(``configs/``, ``benchmarks/`` and ``docs/`` linked in), the way a reader follows a chapter: console blocks
through bash (the venv's ``zhixing`` and ``python`` first on PATH), pycon blocks as doctests and python
blocks in one namespace per page. Output is compared by doctest's rules (``...`` matches anything,
whitespace normalised); a block marked ``figure=PATH`` must leave that image behind. Blocks marked
``<!-- run: slow -->`` run only in the slow suite (``make test-all``), which then runs the page whole.
Chinese twins (``x.zh.md``) are not run again: test_guide_parity.py proves their runnable blocks
identical to the English page's.
"""

import doctest
import os
import subprocess
import sys
from pathlib import Path

import guide
import pytest

REPO = guide.REPO
DATA = Path(os.environ.get("ZHIXING_DATA", REPO.parent / "shared" / "data"))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def pages():
    out = []
    for path in sorted(guide.DOCS.rglob("*.md")):
        rel = path.relative_to(guide.DOCS).as_posix()
        if rel.startswith(guide.SOURCE_DIR + "/") or path.name.endswith(".zh.md"):
            continue
        blocks = guide.runnable_blocks(path)
        if blocks:
            out.append((rel, blocks))
    return out


PAGES = pages()


def _workdir(tmp_path: Path) -> Path:
    for name in ("configs", "benchmarks", "docs"):
        (tmp_path / name).symlink_to(REPO / name)
    return tmp_path


def _env(workdir: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["ZHIXING_DATA"] = str(DATA)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(NO_COLOR="1", TERM="dumb", COLUMNS="100", PYTHONHASHSEED="0", TQDM_DISABLE="1")
    return env


def commands(text: str):
    """(command, expected output) pairs of a console block: ``$ `` lines (``\\`` continues one)."""
    out, command, want = [], None, []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            if command is not None:
                out.append((command, "\n".join(want)))
            command, want = line[2:], []
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
        elif command is not None:
            want.append(line)
        i += 1
    if command is not None:
        out.append((command, "\n".join(want)))
    return out


def run_console(block, workdir, env):
    checker = doctest.OutputChecker()
    for command, want in commands(block.text):
        proc = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, capture_output=True,
                              text=True, timeout=1800)
        got = proc.stdout
        if proc.returncode != 0:
            pytest.fail(f"{block.where()}: `{command}` exited with {proc.returncode}\n{proc.stderr[-3000:]}")
        if want.strip() and not checker.check_output(want.strip() + "\n", got, FLAGS):
            pytest.fail(f"{block.where()}: `{command}` printed something else\n--- page says\n{want}\n"
                        f"--- it printed\n{got[-3000:]}")


def run_python(block, workdir, namespace):
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        if block.lang == "python":
            exec(compile(block.text, block.where(), "exec"), namespace)
            return
        test = doctest.DocTestParser().get_doctest(block.text, namespace, block.where(), str(block.path),
                                                   block.line)
        runner = doctest.DocTestRunner(optionflags=FLAGS)
        report = []
        runner.run(test, out=report.append, clear_globs=False)
        namespace.update(test.globs)  # doctest ran on a copy: what the block defined carries on, as in a REPL
        if runner.failures:
            pytest.fail("".join(report))
    finally:
        os.chdir(cwd)


def check_figure(block, path: Path) -> None:
    """The image a block promises: there, a real PNG (its header's size) or SVG, not a blank stub."""
    if not path.is_file():
        pytest.fail(f"{block.where()}: the block should leave the figure {path.name} behind; it did not")
    data = path.read_bytes()
    if path.suffix == ".svg":
        assert b"<svg" in data[:2000] and len(data) > 1000, f"{block.where()}: {path.name} is no real SVG"
        return
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{block.where()}: {path.name} is not a PNG"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 200 and height >= 100 and len(data) > 5000, (
        f"{block.where()}: {path.name} is {width}x{height}, {len(data)} bytes: too small to be the figure")


def _needs_data(blocks):
    return any("$ZHIXING_DATA" in b.text or "ZHIXING_DATA" in b.text for b in blocks)


def _run(blocks, tmp_path, monkeypatch):
    if _needs_data(blocks) and not DATA.is_dir():
        pytest.skip(f"shared datasets not found at {DATA} (set ZHIXING_DATA)")
    workdir = _workdir(tmp_path)
    env = _env(workdir)
    namespace = {"__name__": "__guide__"}
    monkeypatch.setenv("ZHIXING_DATA", str(DATA))  # python blocks run in this process
    for block in blocks:
        if block.lang == "console":
            run_console(block, workdir, env)
        else:
            run_python(block, workdir, namespace)
        for figure in block.figures:
            check_figure(block, workdir / figure)


@pytest.mark.parametrize("page,blocks", [p for p in PAGES if any(not b.slow for b in p[1])],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_page_examples(page, blocks, tmp_path, monkeypatch):
    _run([b for b in blocks if not b.slow], tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("page,blocks", [p for p in PAGES if any(b.slow for b in p[1])],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_page_examples_with_slow_ones(page, blocks, tmp_path, monkeypatch):
    _run(blocks, tmp_path, monkeypatch)


def test_console_blocks_split_into_commands_and_their_output():
    text = "$ zhixing a \\\n    --b 1\nline one\n...\n$ echo hi\nhi\n"
    assert commands(text) == [("zhixing a  --b 1", "line one\n..."), ("echo hi", "hi")]
