"""`python -m service.openapi`: write the app's OpenAPI description to openapi/openapi.json."""

import json
from pathlib import Path

from modelrepo.files import write_atomic
from service.app import create_app
from service.settings import PROJECT_ROOT

SPEC_PATH = PROJECT_ROOT / "openapi" / "openapi.json"


def render() -> str:
    return json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"


def write(path: Path = SPEC_PATH) -> None:
    write_atomic(path, render().encode())


if __name__ == "__main__":
    write()
    print(f"wrote {SPEC_PATH}")
