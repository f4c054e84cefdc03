"""Whatever a client sends, the answer is a 4xx naming the field, never a 5xx."""

import json

import pytest

GOOD_X = [[0.0] * 5]


@pytest.mark.parametrize(
    "path, body, status, names",
    [
        ("/loglik", {"x": [[0.0] * 4]}, 422, "x: each point has shape [4]; this model takes [5]"),
        ("/loglik", {"x": [[0.0] * 5, [0.0] * 4]}, 422, "x: points are ragged"),
        ("/loglik", {"x": [["a"] * 5]}, 422, "x: must hold only numbers"),
        ("/loglik", {"x": [[None] * 5]}, 422, "x: must hold only numbers"),
        ("/loglik", {"x": [[0.0] * 4 + [1e39]]}, 422, "x[0]: holds NaN, infinity, or a number too large"),
        ("/loglik", {"x": []}, 422, "x: empty batch"),
        ("/loglik", {"x": "0,1"}, 422, "x: Input should be a valid list"),
        ("/loglik", {}, 422, "x: Field required"),
        ("/loglik", {"x": GOOD_X, "k": 0}, 422, "k: Input should be greater than or equal to 1"),
        ("/loglik", {"x": GOOD_X, "k": 10001}, 422, "k: 10001 is over the limit of 10000 (VAE_MAX_K)"),
        ("/loglik", {"x": GOOD_X * 300, "k": 10000}, 422, "points x k: 3000000 is over the limit"),
        ("/loglik", {"x": GOOD_X * 1025}, 422, "x: 1025 points; at most 1024 per request (VAE_MAX_BATCH)"),
        ("/loglik", {"x": GOOD_X, "seed": -1}, 422, "seed: Input should be greater than or equal to 0"),
        ("/loglik", {"x": GOOD_X, "k": "many"}, 422, "k: Input should be a valid integer"),
        ("/loglik", {"x": GOOD_X, "kk": 3}, 422, "kk: Extra inputs are not permitted"),
        ("/loglik", {"x": GOOD_X, "seed": False}, 422, "seed: Input should be a valid integer"),
        ("/loglik", {"x": GOOD_X, "k": "5"}, 422, "k: Input should be a valid integer"),
        ("/loglik", {"x": GOOD_X, "seed": 2**53}, 422, "seed: Input should be less than or equal to"),
        ("/sample", {"n": 1, "temperature": True}, 422, "temperature: Input should be a valid number"),
        ("/loglik", {"model": "nope", "x": GOOD_X}, 404, "model: no model 'nope'; loaded models: bern1d:1"),
        ("/loglik", {"model": "linear:9", "x": GOOD_X}, 404, "model: no model 'linear:9'"),
        ("/loglik", {"model": "a:b:c", "x": GOOD_X}, 422, "model: 'a:b:c' is not 'name' or 'name:version'"),
        ("/loglik", {"model": "bern1d", "x": [[0.5] * 5 + [2]]}, 422, "x[0]: this model has a Bernoulli likelihood"),
        ("/encode", {"x": GOOD_X, "samples": 1001}, 422, "samples: 1001 is over the limit of 1000"),
        ("/encode", {"x": GOOD_X * 101, "samples": 1000}, 422, "points x samples: 101000 is over the limit of 100000"),
        ("/encode", {"x": GOOD_X, "samples": -1}, 422, "samples: Input should be greater than or equal to 0"),
        ("/encode", {"model": "bern1d", "x": [[-0.1] * 6]}, 422, "Bernoulli likelihood"),
        ("/decode", {"z": [[0.0, 0.0]]}, 422, "z: each point has shape [2]; this model takes [3]"),
        ("/decode", {"z": [[0.0, 0.0, float("nan")]]}, 422, "z[0]: holds NaN"),
        ("/sample", {"n": 0}, 422, "n: Input should be greater than or equal to 1"),
        ("/sample", {"n": 1025}, 422, "n: 1025 is over the limit of 1024 (VAE_MAX_SAMPLE_N)"),
        ("/sample", {"n": 1, "mode": "median"}, 422, "mode: Input should be 'mean' or 'sample'"),
        ("/sample", {"n": 1, "temperature": -1}, 422, "temperature: Input should be greater than or equal to 0"),
    ],
)
def test_bad_bodies(client, path, body, status, names):
    response = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert names in response.json()["detail"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_json_nan_and_infinity_tokens(client, token):
    raw = '{"x": [[0, 0, 0, 0, %s]]}' % token
    response = client.post("/loglik", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422 and "x[0]: holds NaN, infinity" in response.json()["detail"]


def test_malformed_json(client):
    response = client.post("/loglik", content="{x: [", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "body: not valid JSON" in response.json()["detail"]


@pytest.mark.parametrize(
    "params, names",
    [({"x": "0,1,a"}, "x: value 2 ('a') is not a number"), ({}, "x: Field required"),
     ({"x": "0,1"}, "x: each point has shape [2]"), ({"x": "0,0,0,0,0", "k": 0}, "k: Input should be greater"),
     ({"x": "0,0,0,0,nan"}, "x: value 4 ('nan') is not a number")],
)
def test_bad_queries(client, params, names):
    response = client.get("/loglik", params=params)
    assert response.status_code == 422 and names in response.json()["detail"]


def test_body_over_the_limit_is_refused_declared_or_streamed(repository, make_client):
    client = make_client(repository, max_body_bytes=2048)
    big = json.dumps({"x": [[0.123456789] * 5] * 100})
    declared = client.post("/loglik", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "VAE_MAX_BODY_BYTES" in declared.json()["detail"]

    def chunks():
        for start in range(0, len(big), 500):
            yield big[start : start + 500].encode()

    streamed = client.post("/loglik", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    small = json.dumps({"x": GOOD_X})
    ok = client.post("/loglik", content=iter([small[:10].encode(), small[10:].encode()]),
                     headers={"content-type": "application/json"})
    assert ok.status_code == 200, ok.text


def test_no_model_named_and_no_default_model(repository, make_client):
    client = make_client(repository, default_model="digits")  # the hand-built repository has no digits
    response = client.post("/encode", json={"x": GOOD_X})
    assert response.status_code == 404
    assert "the default model 'digits' (VAE_DEFAULT_MODEL) is not in the repository" in response.json()["detail"]
    assert client.post("/encode", json={"model": "linear", "x": GOOD_X}).status_code == 200


@pytest.mark.parametrize("depth", [100, 5000, 100000])
def test_deeply_nested_bodies_are_refused(client, depth):
    body = '{"x": ' + "[" * depth + "]" * depth + "}"
    response = client.post("/loglik", content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500 and "detail" in response.json()
