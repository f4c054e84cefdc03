"""The README and docs/ checked against the code: the settings page is the one the settings class renders, every
VAE_* name they mention is a setting (or one of the few deployment variables), every file they point at exists."""

import re
from pathlib import Path

import pytest

from service.configuration import CONFIGURATION_PAGE, configuration_page, settings_table
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SETTING_NAMES = {f"VAE_{name.upper()}" for name in Settings.model_fields}
# Variables that are not settings of the service: the Compose file's published address and port, the
# Dockerfile's build argument for the `gpu` extra, and deploy/e2e.sh's Docker engine.
DEPLOYMENT_NAMES = {"VAE_PUBLISH_ADDRESS", "VAE_PUBLISH_PORT", "VAE_GPU_EXTRA", "VAE_DOCKER_ENGINE"}
# Project paths written in code spans, from the project root (`service/http/front.py`, `docs/RESULTS.md`).
FOLDERS = ("service", "modelrepo", "training", "models", "tests", "bench", "deploy", "docs", "openapi", ".ci")
PROJECT_PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(map(re.escape, FOLDERS))})/[\w./-]*)")


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def test_the_configuration_page_is_what_the_settings_class_renders():
    assert CONFIGURATION_PAGE.read_text() == configuration_page(), "run `make docs` (python -m service.configuration)"
    table = settings_table()
    for name in SETTING_NAMES:
        assert f"| `{name}` |" in table
    assert "| `VAE_MODEL_REPOSITORY` | `models/` |" in table and "| `VAE_MAX_BODY_BYTES` | 32 MiB |" in table
    assert "| `VAE_REDIS_URL` | unset |" in table and "| `VAE_API_KEYS` | unset |" in table


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_variable_named_is_a_setting(page):
    named = set(re.findall(r"\bVAE_[A-Z0-9_]*[A-Z0-9]\b", page.read_text()))
    assert not named - SETTING_NAMES - DEPLOYMENT_NAMES, f"{page_id(page)} names variables that are not settings"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_file_pointed_at_exists(page):
    text = page.read_text()
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):  # Markdown links, relative to the page
        path = target.split("#")[0]
        if path and not re.match(r"[a-z]+:", path) and not path.startswith("../shared/"):
            if not (page.parent / path).exists():
                missing.append(target)
    for span in re.findall(r"`([^`\n]+)`", text):  # paths in code spans, from the project root
        for path in PROJECT_PATH.findall(span):
            path = path.rstrip(".")
            if not (ROOT / path).exists():
                missing.append(path)
    assert not missing, f"{page_id(page)} points at files that do not exist: {missing}"
