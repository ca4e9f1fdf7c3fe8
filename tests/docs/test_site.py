"""The documentation site builds with `mkdocs build --strict`: no broken link, no missing page, no
stale source reference, both languages."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_site_builds_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    site = tmp_path / "site"
    for page in ("index.html", "zh/index.html", "guide/01-language-models/index.html",
                 "zh/guide/01-language-models/index.html", "api/index.html"):
        assert (site / page).is_file(), page
    assert 'lang="zh"' in (site / "zh/guide/index.html").read_text(encoding="utf-8")
