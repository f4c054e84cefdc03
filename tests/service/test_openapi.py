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


@pytest.mark.parametrize("schema, path", [("EncodeRequest", "/encode"), ("DecodeRequest", "/decode"),
                                          ("SampleRequest", "/sample"), ("LoglikRequest", "/loglik")])
def test_examples_are_accepted_by_the_service(make_client, schema, path):
    examples = SPEC["components"]["schemas"][schema]["examples"]
    client = make_client(PROJECT_ROOT / "models", default_model="digits")
    for example in examples:
        response = client.post(path, json=example)
        assert response.status_code == 200, response.text
        assert response.json()["model"].startswith(example["model"] + ":")
