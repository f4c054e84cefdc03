"""KServe's own client of the protocol, `kserve.InferenceRESTClient` (protocol v2), against `python -m service`:
binary and JSON tensors, numbers equal to the service's own API, and its errors with our message."""

import asyncio

import httpx
import numpy as np
import pytest
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

from service.settings import PROJECT_ROOT
from tests.service.serving import running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("logs"), model_repository=PROJECT_ROOT / "models") as running:
        yield running


def infer(server, model, x, binary, **parameters):
    async def call():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
        tensor = InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        try:
            return await client.infer(server.url, InferRequest(model, [tensor], parameters=parameters or None),
                                      model_name=model)
        finally:
            await client.close()

    return asyncio.run(call())


X = (np.random.default_rng(3).random((4, 64)) > 0.5).astype(np.float32)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_loglik_and_score_equal_the_own_api(server, binary):
    result = infer(server, "digits-binary.loglik", X, binary, k=40, seed=2)
    outputs = {output.name: output.as_numpy() for output in result.outputs}
    own = httpx.post(f"{server.url}/loglik", json={"model": "digits-binary", "x": X.tolist(), "k": 40, "seed": 2}).json()
    for name in ("loglik", "stderr", "elbo"):
        np.testing.assert_array_equal(outputs[name], np.asarray(own[name], np.float64))
    assert result.parameters["k"] == 40 and result.parameters["method"] == "importance"
    scored = infer(server, "digits-binary.score", X, binary, fpr=0.1)
    outputs = {output.name: output.as_numpy() for output in scored.outputs}
    own = httpx.post(f"{server.url}/score", json={"model": "digits-binary", "x": X.tolist(), "fpr": 0.1}).json()
    np.testing.assert_array_equal(outputs["p_value"], own["p_value"])
    np.testing.assert_array_equal(outputs["is_outlier"], own["is_outlier"])
    assert scored.parameters["threshold"] == own["threshold"]


def test_errors_carry_our_message(server):
    with pytest.raises(httpx.HTTPStatusError) as caught:
        infer(server, "digits-binary.loglik", X * 3, True)
    assert caught.value.response.status_code == 422 and "Bernoulli likelihood" in str(caught.value)
    with pytest.raises(httpx.HTTPStatusError) as caught:
        infer(server, "digits-binary.nothing", X, True)
    assert caught.value.response.status_code == 404 and "<name>.<operation>" in str(caught.value)
