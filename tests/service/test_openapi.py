"""The committed API description is the app's, and its examples are real requests that succeed."""

import json

import pytest

from service.openapi import SPEC_PATH, render
from service.settings import PROJECT_ROOT

SPEC = json.loads(SPEC_PATH.read_text())


def test_committed_description_matches_the_app():
    assert SPEC_PATH.read_text() == render(), "openapi/openapi.json is stale: run `make openapi`"


def test_every_contract_call_is_described():
    assert {"/encode", "/decode", "/sample", "/loglik", "/models", "/models/{name}", "/health/live",
            "/health/ready", "/metrics"} <= set(SPEC["paths"])
    assert {"get", "post"} <= set(SPEC["paths"]["/loglik"])


def request_schema(path: str) -> dict:
    schema = SPEC["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


@pytest.mark.parametrize("path", ["/encode", "/decode", "/sample", "/loglik"])
def test_examples_are_accepted_by_the_service(make_client, path):
    examples = request_schema(path)["examples"]
    client = make_client(PROJECT_ROOT / "models", default_model="digits")
    for example in examples:
        response = client.post(path, json=example)
        assert response.status_code == 200, response.text
        assert response.json()["model"].startswith(example["model"] + ":")


@pytest.mark.parametrize("path", ["/encode", "/decode", "/loglik"])
def test_binary_bodies_and_their_query_parameters_are_described(path):
    operation = SPEC["paths"][path]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/json", "application/x-npy"}
    assert "application/x-npz" in operation["responses"]["200"]["content"]
    fields = set(request_schema(path)["properties"])
    assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} == fields - {"x", "z"}
