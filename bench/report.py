"""Write a benchmark's section into docs/BENCHMARKS.md, between its own markers, leaving the others as they are.

    python -m bench.report NAME < section.md        (for a shell script's section)
"""

import sys
from pathlib import Path

from modelrepo.files import write_atomic

DOC = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"


def replace_section(name: str, text: str, path: Path = DOC) -> None:
    """The text between <!-- NAME:start --> and <!-- NAME:end -->, appended when the markers are missing."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    existing = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{text.strip()}\n{end}"
    if start in existing and end in existing:
        head, rest = existing.split(start, 1)
        updated = head + block + rest.split(end, 1)[1]
    else:
        updated = existing.rstrip() + "\n\n" + block + "\n"
    write_atomic(path, updated.encode())


if __name__ == "__main__":
    replace_section(sys.argv[1], sys.stdin.read())
    print(f"wrote section {sys.argv[1]} of {DOC}")
