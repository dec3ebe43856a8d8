"""README.md and docs/*.md read as a newcomer reads them: their prose, the code spans in it, their links and the
anchors GitHub gives their headings."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def prose(page: Path) -> str:
    """The page without its fenced blocks (sample output, commands, trees)."""
    return FENCE.sub("", page.read_text())


def code_spans(page: Path) -> Iterator[str]:
    yield from CODE_SPAN.findall(prose(page))


def links(page: Path) -> Iterator[str]:
    for inline, image in LINK.findall(prose(page)):
        yield inline or image


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lower-cased, markup and punctuation other than `-` and `_`
    dropped, spaces made hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "").lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor, a repeated one with GitHub's `-1`, `-2` suffixes."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in HEADING.findall(prose(page)):
        slug = github_slug(heading)
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found
