"""GET /explore and its files, on the real app: served from the package, public with keys set (they hold no data),
under the Host check, kept out of the API description, loading nothing from another host."""

import re

import pytest

from service.http.routes.explorer import FILES, HEADERS

KEY = "explorer-key-0123456789"


@pytest.fixture
def keyed(repository, make_client):
    return make_client(repository, api_keys=KEY, allowed_hosts="testserver")


def test_the_page_and_its_files_are_public_and_their_data_calls_are_not(keyed):
    page = keyed.get("/explore")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    for name in FILES:
        if name != "index.html":
            assert keyed.get(f"/explore/{name}").status_code == 200, name
    assert keyed.get("/models").status_code == 401
    assert keyed.get("/explore/secrets.txt").status_code == 404  # only the files the package ships
    assert keyed.get("/explore/../models").status_code == 401


def test_the_host_check_covers_the_page(keyed):
    assert keyed.get("/explore", headers={"host": "rebinding.example"}).status_code == 400


def test_the_page_may_load_and_call_only_this_service(keyed):
    response = keyed.get("/explore/main.js")
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert {key.lower(): value for key, value in HEADERS.items()}.items() <= response.headers.items()


def test_no_file_names_another_host_and_every_file_it_loads_is_shipped():
    for name, (content, _) in FILES.items():
        text = content.decode()
        urls = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}  # a namespace
        assert not urls, f"{name} names {urls}"
    index = FILES["index.html"][0].decode()
    for target in re.findall(r'(?:href|src)="explore/([^"]+)"', index):
        assert target in FILES
    for name, (content, _) in FILES.items():
        for imported in re.findall(r'from "\./([^"]+)"', content.decode()):
            assert imported in FILES, f"{name} imports {imported}"


def test_the_page_is_linked_from_the_docs_and_not_an_api_operation(client):
    schema = client.get("/openapi.json").json()
    assert not any(path.startswith("/explore") for path in schema["paths"])
    assert "[The explorer](explore)" in schema["info"]["description"]
