"""The repository stands alone: every relative link in README.md, docs/ and the notebooks
resolves to a file in it, and none points outside it (to design notes it does not ship)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|(?:src|href)=\"([^\"]+)\"")


def _documents() -> list[tuple[Path, str]]:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    out = [(p, p.read_text(encoding="utf-8")) for p in docs]
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        out.append((nb, text))
    return out


def _relative_links(text: str) -> list[str]:
    found = [a or b for a, b in LINK.findall(text)]
    return [t for t in found if not re.match(r"^(https?:|mailto:|#|data:)", t)]


def test_every_relative_link_resolves_inside_the_repository():
    bad = []
    checked = 0
    for path, text in _documents():
        for target in _relative_links(text):
            checked += 1
            dest = (path.parent / target.split("#", 1)[0]).resolve()
            if not dest.is_relative_to(ROOT) or not dest.exists():
                bad.append(f"{path.relative_to(ROOT)} -> {target}")
    assert checked >= 5                       # the documents do link to each other
    assert not bad, "broken or outside links:\n" + "\n".join(bad)


def test_no_document_points_at_design_notes_outside_the_repository():
    names = ("../shared", "FEASIBILITY.md", "STRATEGIES.md", "METRICS.md", "EXPERIMENTS.md", "DESIGN.md", "STYLE.md")
    hits = [f"{p.relative_to(ROOT)}: {n}" for p, text in _documents() for n in names if n in text]
    assert not hits, hits


def test_the_link_pattern_finds_what_it_should():
    text = "see [a](docs/a.md#x), ![img](docs/b.png), [web](https://x.org), <img src=\"c.png\">, [top](#top)"
    assert _relative_links(text) == ["docs/a.md#x", "docs/b.png", "c.png"]
