"""`python -m service.configuration`: write docs/CONFIGURATION.md, every setting of the one settings class with its
variable, default and meaning (as `python -m service.openapi` writes the API description)."""

from pathlib import Path

from modelrepo.files import write_atomic
from service.settings import PROJECT_ROOT, Settings

CONFIGURATION_PAGE = PROJECT_ROOT / "docs" / "CONFIGURATION.md"
CONFIGURATION_HEADER = """\
# Configuration

One settings class, `Settings` in `service/settings.py`, read from `VAE_*` environment variables once, when the
service starts, and checked then: a wrong value stops it with a message that names the setting.

Generated from the class by `make docs` (`python -m service.configuration`); do not edit it by hand:
`tests/test_docs.py` fails when this page and the class differ.

"""


def settings_table() -> str:
    """Every field of Settings as one Markdown row: its variable, its default as a person writes it, its description."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        meaning = _markdown_cell(" ".join((field.description or "").split()))
        rows.append(f"| `VAE_{name.upper()}` | {_readable(name, default)} | {meaning} |")
    return "\n".join(rows) + "\n"


def configuration_page() -> str:
    return CONFIGURATION_HEADER + settings_table()


def _readable(name: str, value) -> str:
    """A default as the table shows it: paths from the project root, byte sizes in KiB or MiB, unset for none."""
    if value is None or value == [] or value == "":
        return "unset"
    if isinstance(value, Path):  # the one path setting is a folder
        relative = value.relative_to(PROJECT_ROOT) if value.is_relative_to(PROJECT_ROOT) else value
        return f"`{relative.as_posix()}/`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int) and name.endswith("_bytes"):
        for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value >= size and value % size == 0:
                return f"{value // size} {unit}"
        return f"{value} bytes"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return str(value)
    return f"`{value}`"


def _markdown_cell(text: str) -> str:
    """Text safe in a table cell: `|` escaped; outside code spans, `<` too (`<name>` would read as an HTML tag)."""
    parts = text.replace("|", "\\|").split("`")
    return "`".join(part if inside % 2 else part.replace("<", "\\<") for inside, part in enumerate(parts))


if __name__ == "__main__":
    write_atomic(CONFIGURATION_PAGE, configuration_page().encode())
    print(f"wrote {CONFIGURATION_PAGE.relative_to(PROJECT_ROOT)}")
