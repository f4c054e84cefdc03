"""`python -m service.openapi`: write the app's OpenAPI description to openapi/openapi.json."""

import json
import os
import tempfile
from pathlib import Path

from service.app import create_app
from service.settings import PROJECT_ROOT

SPEC_PATH = PROJECT_ROOT / "openapi" / "openapi.json"


def render() -> str:
    return json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"


def write(path: Path = SPEC_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(render())
    os.replace(tmp, path)


if __name__ == "__main__":
    write()
    print(f"wrote {SPEC_PATH}")
