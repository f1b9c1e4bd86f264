"""What the READMEs say of the browser client is what its module exports."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "js"
ENTRY = CLIENT / "src" / "charts-client.ts"


def exported_values() -> set[str]:
    """The names the entry module exports, types left out."""
    names = set()
    for block in re.findall(r"export \{([^}]*)\}", ENTRY.read_text()):
        for item in block.split(","):
            item = item.strip()
            if item and not item.startswith("type "):
                names.add(item.split(" as ")[-1].strip())
    return names


def entry_points() -> list[str]:
    """The names the entry module's own example imports: what a page starts from."""
    found = re.search(r'import \{([^}]*)\} from "/client/charts-client\.js"', ENTRY.read_text())
    assert found is not None
    return [name.strip() for name in found.group(1).split(",")]


def section(path: Path, heading: str) -> str:
    text = path.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_readme_names_the_entry_points_among_the_modules_exports() -> None:
    browser = section(ROOT / "README.md", "Browser client")
    listed = re.search(r"The module exports (.*?)\sand the wire format's types", browser, re.DOTALL)
    assert listed is not None
    names = set(re.findall(r"`(\w+)`", listed.group(1)))
    assert names <= exported_values(), names - exported_values()
    assert set(entry_points()) == {"ChartsClient", "bindSeries", "createDatafeed"}
    for name in entry_points():
        assert name in names, f"README's browser client section does not list {name}"
        assert f"{name}(" in browser, f"README's browser client section shows no call of {name}"


def test_the_clients_readme_documents_each_entry_point() -> None:
    readme = (CLIENT / "README.md").read_text()
    for name in entry_points():
        assert f"{name}(" in readme, f"clients/js/README.md shows no call of {name}"
