"""The repository carries its own documentation: nothing points outside it, and relative links resolve."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / line for line in out.splitlines() if (REPO / line).is_file()]


def test_nothing_points_to_files_outside_the_repository():
    text_files = _tracked("*.md", "*.py", "*.avsc", "*.yaml", "*.yml", "*.toml", "*.html", "Makefile", "Dockerfile")
    assert len(text_files) > 50
    offenders = [f"{p.relative_to(REPO)}:{n}" for p in text_files
                 for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
                 if re.search(r"(\.\./|/work/)shared/|\bshared/(design|legal|kafka-notes)", line)
                 and p != Path(__file__)]
    assert offenders == []


def test_relative_links_in_markdown_resolve():
    broken = []
    for doc in _tracked("*.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            path = (doc.parent / target).resolve()
            if not path.exists():
                broken.append(f"{doc.relative_to(REPO)} → {target}")
    assert broken == []
