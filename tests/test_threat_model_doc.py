"""docs/threat-model.md names the test behind each control: every name must exist, so the page
cannot drift from the suite."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "threat-model.md"


def test_every_test_the_threat_model_cites_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    sources = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py")}
    cited = 0
    for cell in re.findall(r"`([^`]*test_[a-z0-9_]+[^`]*)`", text):
        match = re.fullmatch(r"(?:(test_[a-z0-9_]+\.py))?(?:::(test_[a-z0-9_]+))?", cell)
        if match is None or not any(match.groups()):
            continue
        module, test = match.groups()
        if module is not None:
            assert module in sources, f"{module} cited but missing"
        if test is not None:
            where = [sources[module]] if module else list(sources.values())
            assert any(re.search(rf"def {test}\(", s) for s in where), f"{cell} cited but missing"
        cited += 1
    assert cited >= 40
    assert (ROOT / "bench" / "load.py").exists()
