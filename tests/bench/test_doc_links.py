"""Relative links in the project's markdown: every target file exists and every #anchor names a heading.

Anchors are GitHub's: the heading's text, lower-cased, without punctuation, spaces as hyphens, and
"-1", "-2", ... on repeats within a file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted(
    {
        *ROOT.glob("bench/*.md"),
        *ROOT.glob("bench/results/*.md"),
        *ROOT.glob("docs/*.md"),
        ROOT / "README.md",
        ROOT / "studies" / "README.md",
    }
)

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_INLINE_CODE = re.compile(r"(`+).*?\1")
_LINK_TARGET = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_LINK_IN_HEADING = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _prose_lines(path: Path) -> Iterator[Tuple[int, str]]:
    """(line number, line) for every line outside fenced code blocks."""
    in_fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield number, line


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading (before the suffix that tells repeats apart)."""
    text = _LINK_IN_HEADING.sub(r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> Set[str]:
    """Every heading anchor of a markdown file."""
    seen: Dict[str, int] = {}
    found = set()
    for _, line in _prose_lines(path):
        match = _HEADING.match(line)
        if match is None:
            continue
        anchor = github_anchor(match.group(1))
        repeats = seen.get(anchor, 0)
        seen[anchor] = repeats + 1
        found.add(anchor if repeats == 0 else f"{anchor}-{repeats}")
    return found


def broken_links(path: Path) -> List[str]:
    """'file:line: target (why)' for each relative link of path that leads nowhere."""
    problems = []
    for number, line in _prose_lines(path):
        for target in _LINK_TARGET.findall(_INLINE_CODE.sub("", line)):
            if _SCHEME.match(target):
                continue
            file_part, _, anchor = target.partition("#")
            destination = (path.parent / unquote(file_part)).resolve() if file_part else path
            where = f"{os.path.relpath(path, ROOT)}:{number}: {target}"
            if not destination.exists():
                problems.append(f"{where} (no such file)")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                problems.append(f"{where} (no heading with that anchor)")
    return problems


def test_anchors_follow_github() -> None:
    assert github_anchor("Memory") == "memory"
    assert github_anchor("Throughput against BindsNET, N = 400, P = 1 (issue 3)") == (
        "throughput-against-bindsnet-n--400-p--1-issue-3"
    )
    assert github_anchor("The paper's Fig. 9: `studies/x.toml`, 60 trials") == (
        "the-papers-fig-9-studiesxtoml-60-trials"
    )
    assert github_anchor("diehl_cook at [FP32](a.md#b), +- 0.5 %") == "diehl_cook-at-fp32---05-"


def test_a_missing_file_or_heading_is_reported(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## Same\n\n## Same\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md#same-1) [fine](#page) `[in code](gone.md)` [web](https://example.org/x)\n"
        "[gone](gone.md) [bad anchor](other.md#same-2) [bad here](#nowhere)\n"
        "```\n[in a fence](gone.md)\n```\n",
        encoding="utf-8",
    )
    assert [problem.split(": ", 1)[1] for problem in broken_links(page)] == [
        "gone.md (no such file)",
        "other.md#same-2 (no heading with that anchor)",
        "#nowhere (no heading with that anchor)",
    ]


def test_every_topic_file_is_in_the_results_index() -> None:
    index = (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    topics = sorted(path.name for path in (ROOT / "bench" / "results").glob("*.md"))
    assert topics, "bench/results/ holds no topic file"
    assert [name for name in topics if f"](results/{name})" not in index] == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_lead_to_a_file_and_heading(document: Path) -> None:
    assert broken_links(document) == []
