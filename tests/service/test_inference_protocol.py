"""The Open Inference Protocol (CONTRACT section 5) through the real clients: tritonclient.http, binary (its
default) and JSON, against `python -m service` on loopback, for every operation of the shipped models and of
hand-built ones (Gaussian, Bernoulli, mixture prior, categorical, autoregressive). Each answer is compared with
the service's own API for the same request, and the linear-Gaussian model's with its closed form."""

import json
import shutil

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from service.settings import PROJECT_ROOT
from tests.service.handmade import LinearGaussian, LinearGaussianMixture, SmallAutoregressive, SmallCategorical
from tests.service.scoring_helpers import write_reference
from tests.service.serving import running_server

SHIPPED = sorted(p.parent.parent.name for p in (PROJECT_ROOT / "models").glob("*/1/manifest.json"))
HANDMADE = ["linear", "mog", "cat", "ar"]
MAX_K = 2000
KEY = "protocol-test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol") / "models"
    shutil.copytree(PROJECT_ROOT / "models", root)
    write_reference(LinearGaussian().write(root, "linear", 1), np.linspace(-12.0, -4.0, 99), k=64, seed=3)
    LinearGaussianMixture().write(root, "mog", 1)
    SmallCategorical().write(root, "cat", 1)
    SmallAutoregressive().write(root, "ar", 1)
    return root


@pytest.fixture(scope="module")
def server(repository, tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("logs"), model_repository=repository, cache_min_work=0,
                        max_k=MAX_K) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return triton.InferenceServerClient(f"127.0.0.1:{server.port}")


def manifest(repository, name):
    return json.loads((repository / name / "1" / "manifest.json").read_text())


def points(repository, name, n=3, seed=0):
    """n points the model takes: values in [0, 1] (valid for Bernoulli and Gaussian models alike)."""
    shape = manifest(repository, name)["data_shape"]
    x = np.random.default_rng(seed).random((n, *shape))
    return (x > 0.5).astype(np.float32) if manifest(repository, name)["likelihood"]["type"] == "bernoulli" \
        else x.astype(np.float32)


def latents(server, name, x):
    """What the model's own /encode gives for x, as decoder input: the means, or one-hot draws (categorical)."""
    answer = own(server, "encode", name, x, samples=1, seed=0)
    return np.asarray(answer["z"], np.float32)[:, 0] if "logits" in answer else np.asarray(answer["mu"], np.float32)


def own(server, operation, name, array=None, **parameters):
    body = {"model": f"{name}:1", **parameters}
    if array is not None:
        body["z" if operation == "decode" else "x"] = array.tolist()
    response = httpx.post(f"{server.url}/{operation}", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def infer(client, protocol_model, input_name, array, binary=True, outputs=None, **parameters):
    """tritonclient's infer: the input binary (its default) or JSON; outputs=None asks for all of them, which
    tritonclient asks for as binary; else the named ones, binary or JSON as the input."""
    inputs = []
    if input_name is not None:
        tensor = triton.InferInput(input_name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    requested = None if outputs is None else [triton.InferRequestedOutput(name, binary_data=binary) for name in outputs]
    return client.infer(protocol_model, inputs, model_version="1", outputs=requested, parameters=parameters or None)


DTYPES = {"FP64": np.float64, "FP32": np.float32, "BOOL": np.bool_}


def assert_same(result, answer, metadata, binary):
    """Every output the protocol gave equals the own API's array, bit for bit in its datatype; the scalars too."""
    response = result.get_response()
    names = [o["name"] for o in response["outputs"]]
    expected_names = {o["name"] for o in metadata["outputs"]} & set(answer)
    assert set(names) == expected_names, (names, sorted(answer))
    for output in response["outputs"]:
        assert ("parameters" in output) == binary and ("data" in output) != binary
        got = result.as_numpy(output["name"])
        assert got.dtype == DTYPES[output["datatype"]]
        np.testing.assert_array_equal(got, np.asarray(answer[output["name"]], dtype=got.dtype))
    for name, value in response["parameters"].items():
        assert (json.loads(value) if name == "reference" else value) == answer[name]


CASES = [("encode", {"samples": 2, "seed": 3}), ("decode", {}), ("sample", {"n": 3, "seed": 4}),
         ("loglik", {"k": 50, "seed": 1}), ("score", {"fpr": 0.05, "features": True})]


def has_reference(repository, name):
    return (repository / name / "1" / "reference.json").exists()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("name", SHIPPED + HANDMADE)
def test_every_operation_answers_as_the_service_own_api(repository, server, client, name, binary):
    autoregressive = manifest(repository, name)["likelihood"].get("autoregressive", False)
    x = points(repository, name)
    for operation, parameters in CASES:
        if operation == "score" and not has_reference(repository, name):
            continue
        parameters = dict(parameters)
        if operation == "sample" and autoregressive:
            parameters["mode"] = "sample"
        if operation == "decode" and autoregressive:
            parameters["seed"] = 9
        array = {"decode": latents(server, name, x), "sample": None}.get(operation, x)
        protocol_model = f"{name}.{operation}"
        metadata = client.get_model_metadata(protocol_model, "1")
        answer = own(server, operation, name, array, **parameters)
        outputs = None if binary else [o["name"] for o in metadata["outputs"] if o["name"] in answer]
        result = infer(client, protocol_model, {"decode": "z", "sample": None}.get(operation, "x"), array, binary,
                       outputs, **parameters)
        assert result.get_response()["model_name"] == protocol_model
        assert result.get_response()["model_version"] == "1"
        assert_same(result, answer, metadata, binary)


def test_the_linear_gaussian_loglik_is_its_closed_form(client):
    model = LinearGaussian()
    x = np.random.default_rng(1).normal(size=(4, model.data_dim)).astype(np.float32)
    result = infer(client, "linear.loglik", "x", x, k=16)
    np.testing.assert_allclose(result.as_numpy("loglik"), model.exact_loglik(x.astype(np.float64)), atol=2e-4)
    assert result.as_numpy("stderr").max() < 1e-4  # the exact posterior as proposal: every weight the same


def test_metadata_gives_real_shapes_and_datatypes(client):
    categorical = client.get_model_metadata("cat.encode")
    assert categorical["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert {o["name"]: o["shape"] for o in categorical["outputs"]} == {"logits": [-1, 2, 3], "z": [-1, -1, 2, 3]}
    assert client.get_model_metadata("cat.decode")["inputs"] == [{"name": "z", "datatype": "FP32", "shape": [-1, 2, 3]}]
    assert "seed" in client.get_model_metadata("ar.decode")["parameters"]
    assert "seed" not in client.get_model_metadata("linear.decode")["parameters"]
    mnist = client.get_model_metadata("mnist-binary.score")
    assert mnist["inputs"][0]["shape"] == [-1, 28, 28]
    assert {o["name"]: o["datatype"] for o in mnist["outputs"]} == {
        "score": "FP64", "p_value": "FP64", "is_outlier": "BOOL", "loglik": "FP64", "stderr": "FP64",
        "feature_scores": "FP32"}
    ratio = {o["name"] for o in client.get_model_metadata("digits-binary-ratio.score")["outputs"]}
    assert "background_loglik" in ratio
    assert client.get_model_metadata("digits.loglik")["parameters"] == {
        "k": {"datatype": "INT64", "default": 1000}, "seed": {"datatype": "INT64", "default": 0}}
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]


def test_health_and_readiness(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits.loglik") and client.is_model_ready("digits.loglik", "1")
    assert client.is_model_ready("linear.score")
    assert not client.is_model_ready("mog.score")  # no reference.json: /score is off for it
    assert not client.is_model_ready("digits.loglik", "7") and not client.is_model_ready("nothing.loglik")


def test_a_protocol_answer_is_a_cache_hit_for_the_own_api(server, client, repository):
    x = points(repository, "digits", seed=11)
    before = _cache_hits(server)
    result = infer(client, "digits.loglik", "x", x, k=77, seed=5)
    answer = own(server, "loglik", "digits", x, k=77, seed=5)
    assert _cache_hits(server) == before + 1
    np.testing.assert_array_equal(result.as_numpy("loglik"), answer["loglik"])


def _cache_hits(server) -> float:
    metrics = httpx.get(f"{server.url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith('vae_cache_hits_total{operation="loglik"'))


def refused(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_errors_reach_the_client_with_our_message(client, repository, binary):
    x = points(repository, "digits")
    error = refused(lambda: infer(client, "nothing.loglik", "x", x, binary))
    assert error.status() == "404" and "no model 'nothing:1'" in error.message()
    error = refused(lambda: infer(client, "digits.frobnicate", "x", x, binary))
    assert error.status() == "404" and "encode, decode, sample, loglik, score" in error.message()
    error = refused(lambda: infer(client, "digits.loglik", "x", x[:, :5], binary))
    assert error.status() == "422" and "x: each point has shape [5]; this model takes [64]" in error.message()
    nan = x.copy()
    nan[1, 3] = np.nan
    error = refused(lambda: infer(client, "digits.loglik", "x", nan, binary))
    assert error.status() == "422" and "x[1]: holds NaN" in error.message()
    error = refused(lambda: infer(client, "digits.loglik", "x", x, binary, k=MAX_K + 1))
    assert error.status() == "422" and "VAE_MAX_K" in error.message()
    error = refused(lambda: infer(client, "digits.loglik", "x", x, binary, k="many"))
    assert error.status() == "422" and error.message().startswith("parameters.k:")
    error = refused(lambda: infer(client, "digits.loglik", "x", x, binary, bogus=1))
    assert error.status() == "422" and "parameters.bogus" in error.message()
    error = refused(lambda: infer(client, "digits.loglik", "z", x, binary))
    assert error.status() == "400" and "takes one input, x; got z" in error.message()
    error = refused(lambda: infer(client, "digits-binary.loglik", "x", x + 0.5, binary))
    assert error.status() == "422" and "Bernoulli" in error.message()


def test_a_datatype_we_do_not_take(client):
    tensor = triton.InferInput("x", [1, 64], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"a"] * 64], dtype=np.object_))
    error = refused(lambda: client.infer("digits.loglik", [tensor]))
    assert error.status() == "400" and "datatype: 'BYTES' is not taken; send one of BOOL" in error.message()


def test_float64_and_integer_inputs_are_taken(client, server, repository):
    x = points(repository, "digits-binary")
    for dtype, datatype in ((np.float64, "FP64"), (np.uint8, "UINT8"), (np.bool_, "BOOL")):
        tensor = triton.InferInput("x", list(x.shape), datatype)
        tensor.set_data_from_numpy(x.astype(dtype))
        got = client.infer("digits-binary.loglik", [tensor], parameters={"k": 20}).as_numpy("loglik")
        np.testing.assert_array_equal(got, own(server, "loglik", "digits-binary", x, k=20)["loglik"])


def test_the_protocol_timeout_parameter_shortens_the_deadline(client, repository):
    x = points(repository, "mnist-binary", n=64)
    error = refused(lambda: client.infer("mnist-binary.loglik", [_tensor(x)], parameters={"k": MAX_K},
                                         timeout=1000))  # 1 ms, in microseconds as Triton counts it
    assert error.status() == "503" and "deadline of 0.001 s" in error.message()


def _tensor(x):
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor


def post(server, path, body, headers=None):
    return httpx.post(f"{server.url}{path}", content=body, headers=headers or {}, timeout=30)


def _with_length(header: bytes, data: bytes) -> tuple[bytes, dict]:
    return header + data, {"Inference-Header-Content-Length": str(len(header))}


def binary_request(x: np.ndarray, size: int | None = None, extra: bytes = b"") -> tuple[bytes, dict]:
    data = x.astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(data) if size is None else size}}]})
    return header.encode() + data + extra, {"Inference-Header-Content-Length": str(len(header))}


@pytest.mark.parametrize("mangle, message", [
    (lambda x: binary_request(x, size=12), "binary_data_size is 12 bytes, but shape [2, 64] of FP32 is 512"),
    (lambda x: binary_request(x, size=10_000), "binary_data_size is 10000"),
    (lambda x: binary_request(x, extra=b"\0" * 8), "8 bytes after the last binary tensor"),
    (lambda x: (binary_request(x)[0], {"Inference-Header-Content-Length": "999999"}), "at most the body's"),
    (lambda x: (binary_request(x)[0], {"Inference-Header-Content-Length": "-4"}), "Inference-Header-Content-Length"),
    (lambda x: (binary_request(x)[0], {"Inference-Header-Content-Length": "10"}), "not valid JSON"),
    (lambda x: (b"[1, 2]", {}), "must be a JSON object"),
    (lambda x: (json.dumps({"inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP32"}]}).encode(), {}),
     "no data"),
    (lambda x: (json.dumps({"inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP32",
                                        "data": [0.5] * 100}]}).encode(), {}), "holds 128 values, but data has 100"),
    (lambda x: (json.dumps({"inputs": [{"name": "x", "shape": [2, -64], "datatype": "FP32",
                                        "data": []}]}).encode(), {}), "inputs.0.shape.1"),
    (lambda x: (json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "INT32",
                                        "data": [0.5] * 64}]}).encode(), {}), "whole numbers only"),
    (lambda x: _with_length(json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "BF16",
                                                     "parameters": {"binary_data_size": 128}}]}).encode(), b"\0" * 128),
     "datatype: 'BF16' is not taken"),
])
def test_a_malformed_request_is_a_400_in_the_protocol_form(server, mangle, message):
    body, headers = mangle(np.full((2, 64), 0.25, np.float32))
    response = post(server, "/v2/models/digits.loglik/infer", body, headers)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"} and message in response.json()["error"], response.json()


def test_json_booleans_in_numbers_are_refused_as_by_the_own_api(server):
    body = {"inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP32", "data": [True] + [0.5] * 127}]}
    response = post(server, "/v2/models/digits.loglik/infer", json.dumps(body).encode())
    assert response.status_code == 422 and "true is not a number" in response.json()["error"]


def test_requested_outputs_and_the_request_id(server, repository):
    x = points(repository, "digits")
    body = {"id": "req-7", "inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                       "data": x.ravel().tolist()}],
            "parameters": {"k": 30}, "outputs": [{"name": "stderr"}]}
    response = post(server, "/v2/models/digits/versions/1/infer".replace("digits", "digits.loglik"),
                    json.dumps(body).encode())
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    answer = response.json()
    assert answer["id"] == "req-7" and [o["name"] for o in answer["outputs"]] == ["stderr"]
    body["outputs"] = [{"name": "loglik"}, {"name": "posterior"}]
    response = post(server, "/v2/models/digits.loglik/infer", json.dumps(body).encode())
    assert response.status_code == 400 and "'posterior' is not in this answer" in response.json()["error"]


def test_refusals_before_the_route_are_in_the_protocol_form(repository, tmp_path):
    with running_server(tmp_path, model_repository=repository, api_keys=KEY, max_body_bytes=4096) as server:
        keyed = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        x = points(repository, "digits")
        error = refused(lambda: keyed.infer("digits.loglik", [_tensor(x)]))
        assert error.status() == "401" and "no bearer key" in error.message()
        result = keyed.infer("digits.loglik", [_tensor(x)], parameters={"k": 10},
                             headers={"Authorization": f"Bearer {KEY}"})
        assert result.as_numpy("loglik").shape == (3,)
        assert keyed.is_server_ready()  # the probes need no key, as /health/*
        big = np.zeros((40, 64), np.float32)
        error = refused(lambda: keyed.infer("digits.loglik", [_tensor(big)], headers={"Authorization": f"Bearer {KEY}"}))
        assert error.status() == "413" and "VAE_MAX_BODY_BYTES" in error.message()
        unknown = httpx.get(f"{server.url}/v2/nowhere", headers={"Authorization": f"Bearer {KEY}"})
        assert unknown.status_code == 404 and unknown.json() == {"error": "Not Found"}
        wrong_method = httpx.put(f"{server.url}/v2/health/live")
        assert wrong_method.status_code == 405 and wrong_method.json() == {"error": "Method Not Allowed"}
