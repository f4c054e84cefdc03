import pytest

from tests.browser.explorable import explorable_repository
from tests.browser.pages import CHROMIUM, MISSING_CHROMIUM
from tests.service.serving import running_server

KEY = "explorer-test-key-5b1d0c27e9"


@pytest.fixture(scope="module")
def explorer_repository(tmp_path_factory):
    return explorable_repository(tmp_path_factory.mktemp("explorer") / "models", test_references=True)


def serve(tmp_path_factory, repository, **settings):
    # The in-process cache (no Redis needed), and no keys unless the test sets them
    with running_server(tmp_path_factory.mktemp("server"), model_repository=repository, default_model="digits-binary",
                        redis_url="", api_keys=settings.pop("api_keys", ""), **settings) as server:
        yield server


@pytest.fixture(scope="module")
def open_server(tmp_path_factory, explorer_repository):
    yield from serve(tmp_path_factory, explorer_repository)


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory, explorer_repository):
    yield from serve(tmp_path_factory, explorer_repository, api_keys=KEY, allowed_hosts="127.0.0.1,localhost")


@pytest.fixture(scope="module")
def browser():
    # Per module, not per session: Playwright's sync API holds an asyncio loop on the main thread while it runs,
    # which would break every later test that calls asyncio.run()
    assert CHROMIUM.exists(), MISSING_CHROMIUM
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()
