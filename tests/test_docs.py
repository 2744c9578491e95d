"""The documentation's links resolve, and the README stays a front door.

Checks every markdown link ``[text](target)`` in ``README.md``, ``docs/*.md`` and
``benchmarks/README.md`` outside code: a relative path must exist, and an anchor
(``page.md#heading`` or ``#heading``) must be the GitHub slug of a heading of the target file.
The README must keep the two set-up commands verbatim (CI and users copy them) and at most
250 lines, and every page in ``docs/`` must be reachable from it.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]

SETUP = (
    'python3 -m venv .venv && . .venv/bin/activate && pip install "torch==2.13.0" && '
    'pip install -e ".[dev]" && fedsim run scenarios/quickstart.yaml'
)
TESTS = ". .venv/bin/activate && python -m pytest"

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"(`+).*?\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """Lines outside fenced code blocks, numbered from 1, with inline code removed."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, _INLINE_CODE.sub("", line)))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.

    >>> slug("Running with `flwr run`")
    'running-with-flwr-run'
    >>> slug("data → model")
    'data--model'
    >>> slug("[Model theft](model-theft.md) and more")
    'model-theft-and-more'
    """
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, with GitHub's ``-1``, ``-2`` for repeats."""
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every markdown link of a file outside code."""
    text = path.read_text(encoding="utf-8")
    return [(n, m.group(1)) for n, line in _prose_lines(text) for m in _LINK.finditer(line)]


def _problem(page: Path, target: str) -> str | None:
    """Why a link target does not resolve, or None when it does."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
        return None
    path_part, _, anchor = target.partition("#")
    dest = (page.parent / unquote(path_part)).resolve() if path_part else page
    if not dest.exists():
        return f"{path_part} does not exist"
    if anchor:
        if dest.is_dir() or dest.suffix != ".md":
            return f"anchor #{anchor} on {path_part}, which is not a markdown file"
        if unquote(anchor) not in anchors(dest):
            return f"{path_part or dest.name} has no heading with anchor #{anchor}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves(page: Path) -> None:
    assert page.exists(), page
    broken = [
        f"{page.relative_to(ROOT)}:{line}: ({target}) {why}"
        for line, target in links(page)
        if (why := _problem(page, target)) is not None
    ]
    assert not broken, "\n".join(broken)


def test_readme_is_a_front_door() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250, f"README.md has {len(text.splitlines())} lines"
    lines = text.splitlines()
    assert SETUP in lines, "the README's set-up command changed"
    assert TESTS in lines, "the README's test command changed"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for _, target in links(README)
        if target.startswith("docs/")
    }
    orphans = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not orphans, f"docs pages the README does not link: {orphans}"


def test_the_checker_sees_broken_links(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Top\n\n## Running with `flwr run`\n", encoding="utf-8")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#running-with-flwr-run) [bad](a.md#nope) [gone](c.md) [self](#x)\n"
        "`[code](c.md)`\n```\n[fenced](c.md)\n```\n# X\n",
        encoding="utf-8",
    )
    problems = {t: _problem(page, t) for _, t in links(page)}
    assert set(problems) == {"a.md#running-with-flwr-run", "a.md#nope", "c.md", "#x"}
    assert problems["a.md#running-with-flwr-run"] is None and problems["#x"] is None
    assert problems["a.md#nope"] and problems["c.md"]
