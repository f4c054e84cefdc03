"""Schemathesis generates requests from openapi/openapi.json, valid and invalid, against the shipped models.

It checks that nothing is a 5xx, that invalid requests are refused, and that every response keeps the
documented status codes, content types and schemas. Two of its checks do not apply here:
- positive_data_acceptance: a schema-valid point can still have the wrong shape for the model it names
  (shapes live in each model's manifest, not in the API description); such requests are rightly a 422.
- allow_header_conformance: GET and POST /loglik are two routes, and a 405 from either lists its own method.
"""

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import allow_header_conformance, positive_data_acceptance

from service.app import create_app
from service.settings import PROJECT_ROOT, Settings

schemathesis.serializer.alias("application/x-npy", "application/octet-stream")  # raw bytes: the parser's fuzz
app = create_app(Settings(model_repository=PROJECT_ROOT / "models"))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
schema.config.generation.update(modes=list(GenerationMode))


@pytest.fixture(scope="module", autouse=True)
def started_app():
    with TestClient(app):  # runs the lifespan: models load once for every generated case
        yield


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests(case):
    case.call_and_validate(excluded_checks=[positive_data_acceptance, allow_header_conformance])
