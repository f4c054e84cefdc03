"""API keys, allowed hosts and the offline docs, on the real app."""

import logging
import re
from html.parser import HTMLParser

import anyio
import pytest
from pydantic import ValidationError

from service.http.security import MAX_ACCEPTED_HOSTS, AccessPolicy, host_name
from service.settings import Settings

KEYS = "first-key-0123456789,second-key-abcdef"
X = {"x": [[0.0] * 5], "k": 10}


@pytest.fixture
def keyed(repository, make_client):
    return make_client(repository, api_keys=KEYS)


def bearer(key: str) -> dict:
    return {"authorization": f"Bearer {key}"}


def test_without_keys_every_route_is_open(client):
    assert client.post("/loglik", json=X).status_code == 200
    assert client.get("/metrics").status_code == 200


def test_no_key_is_401_with_a_bearer_challenge(keyed):
    response = keyed.post("/loglik", json=X)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer <key>" in response.json()["detail"]
    assert "VAE_API_KEYS" in response.json()["detail"]


@pytest.mark.parametrize("header", ["Bearer wrong", "Bearer first-key-012345678", "Bearer first-key-0123456789x",
                                    "Bearer ", "bearer second-key-abcdeF"])
def test_wrong_key_is_401_invalid_token_and_never_echoed(keyed, header):
    response = keyed.post("/loglik", json=X, headers={"authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert "not valid" in response.json()["detail"]
    sent = header.split(" ", 1)[1]
    assert not sent or sent not in response.text


@pytest.mark.parametrize("header", ["Basic Zmlyc3Qta2V5", "first-key-0123456789", ""])
def test_other_schemes_are_no_bearer_key(keyed, header):
    response = keyed.get("/models", headers={"authorization": header})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("key", KEYS.split(","))
def test_every_configured_key_opens_every_route(keyed, key):
    assert keyed.post("/loglik", json=X, headers=bearer(key)).status_code == 200
    assert keyed.get("/loglik", params={"x": "0,0,0,0,0", "k": 10}, headers=bearer(key)).status_code == 200
    assert keyed.post("/sample", json={"n": 1}, headers=bearer(key)).status_code == 200
    assert keyed.get("/models", headers=bearer(key)).status_code == 200
    assert keyed.get("/metrics", headers=bearer(key)).status_code == 200


def test_scheme_name_is_case_insensitive(keyed):
    assert keyed.get("/models", headers={"authorization": "BEARER second-key-abcdef"}).status_code == 200


@pytest.mark.parametrize("path", ["/metrics", "/models", "/models/linear", "/nowhere"])
def test_metrics_models_and_unknown_paths_are_closed(keyed, path):
    assert keyed.get(path).status_code == 401


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/docs", "/redoc", "/openapi.json",
                                  "/docs/static/swagger-ui.css"])
def test_probes_and_docs_are_open(keyed, path):
    assert keyed.get(path).status_code == 200


def test_refusals_are_counted_in_the_metrics(keyed):
    keyed.get("/models")
    metrics = keyed.get("/metrics", headers=bearer("first-key-0123456789")).text
    assert re.search(r'vae_http_requests_total\{endpoint="unmatched",method="GET",status="401"\} 1\.0', metrics), metrics


def test_keys_never_reach_the_logs_or_the_settings_repr(repository, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(repository, api_keys=KEYS)
    client.get("/models", headers=bearer("first-key-0123456789"))
    client.get("/models", headers=bearer("a-guess-of-a-key"))
    logged = caplog.text + repr(client.app.state.settings)
    for secret in [*KEYS.split(","), "a-guess-of-a-key"]:
        assert secret not in logged


def test_keys_come_from_the_environment(repository, make_client, monkeypatch):
    monkeypatch.setenv("VAE_API_KEYS", " env-key-1 , env-key-2 ,")
    client = make_client(repository)
    assert client.get("/models", headers=bearer("env-key-2")).status_code == 200
    assert client.get("/models", headers=bearer("env-key-2 ,")).status_code == 401


# Hosts -----------------------------------------------------------------------------------------------------------

@pytest.fixture
def hosted(repository, make_client):
    return make_client(repository, allowed_hosts="localhost,127.0.0.1,[::1],*.example.org")


@pytest.mark.parametrize("host", ["localhost", "LocalHost:8000", "127.0.0.1:80", "[::1]", "[::1]:8000",
                                  "api.example.org", "a.b.example.org:443", "localhost."])
def test_allowed_hosts_are_served(hosted, host):
    assert hosted.get("/models", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.com", "localhost.evil.com", "example.org", "notexample.org", "[::2]:8000",
                                  "::1", "localhost:80x", "127.0.0.1:8000:1", "[::1]x", ""])
def test_other_hosts_are_400_naming_the_host_and_the_setting(hosted, host):
    response = hosted.get("/health/live", headers={"host": host})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("host: ") and "VAE_ALLOWED_HOSTS" in detail
    assert repr(host) in detail or (not host and "missing" in detail)


def test_a_request_without_a_host_header_is_refused(repository, make_client):
    app = make_client(repository, allowed_hosts="localhost").app
    messages = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        messages.append(message)

    scope = {"type": "http", "method": "GET", "path": "/health/live", "raw_path": b"/health/live",
             "query_string": b"", "headers": [], "http_version": "1.1", "scheme": "http", "root_path": "",
             "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000), "app": app}
    anyio.run(app, scope, receive, send)
    assert messages[0]["status"] == 400
    assert b'"host: missing is not' in messages[1]["body"]


def test_without_allowed_hosts_any_host_is_served(client):
    assert client.get("/health/live", headers={"host": "anything.example"}).status_code == 200


def test_the_host_check_comes_before_the_key_check(repository, make_client):
    client = make_client(repository, allowed_hosts="localhost", api_keys="k")
    assert client.get("/models", headers={"host": "evil.com"}).status_code == 400
    assert client.get("/models", headers={"host": "localhost"}).status_code == 401


@pytest.mark.parametrize("value, name", [(b"Example.COM:8000", b"example.com"), (b"[::1]:8000", b"::1"),
                                          (b"[::1]", b"::1"), (b"host", b"host"), (b"host:", b"host"),
                                          (b"a:b", None), (b"[::1]:x", None)])
def test_host_name(value, name):
    assert host_name(value) == name


def test_remembered_hosts_are_bounded_and_only_allowed_ones():
    policy = AccessPolicy(["localhost"], [])
    for port in range(100):
        assert policy.host_refusal(b"localhost:%d" % port) is None
        assert policy.host_refusal(b"evil.com:%d" % port) is not None
    assert len(policy.accepted_hosts) == MAX_ACCEPTED_HOSTS
    assert all(host.startswith(b"localhost:") for host in policy.accepted_hosts)
    assert policy.host_refusal(b"localhost:99") is None and policy.host_refusal(None) is not None


def test_an_open_policy_is_skipped_whole():
    assert AccessPolicy([], []).open and not AccessPolicy(["localhost"], []).open


@pytest.mark.parametrize("value", ["localhost:8000", "*", "a*.b", "exa*mple.org", "http://localhost"])
def test_bad_allowed_hosts_fail_at_start(repository, value):
    with pytest.raises(ValidationError, match="VAE_ALLOWED_HOSTS"):
        Settings(model_repository=repository, allowed_hosts=value)


# Docs ------------------------------------------------------------------------------------------------------------

class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href", "spec-url") and value]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_work_offline(keyed, page):
    html = keyed.get(page).text
    assert not re.search(r"https?://", html), "the docs page must not load anything from the network"
    links = Links()
    links.feed(html)
    assert any(url.endswith(".js") for url in links.urls)
    for url in links.urls + ["/openapi.json"]:
        response = keyed.get(url)
        assert response.status_code == 200, url
        assert len(response.content) > 100, url


def test_the_api_description_names_the_bearer_scheme(client):
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"] == {**spec["components"]["securitySchemes"]["bearer"],
                                                               "type": "http", "scheme": "bearer"}
    for path in ("/loglik", "/models", "/metrics"):
        for operation in spec["paths"][path].values():
            assert {"bearer": []} in operation["security"] and "401" in operation["responses"]
    for path in ("/health/live", "/health/ready"):
        assert "security" not in spec["paths"][path]["get"]
