"""Binary payloads: .npy request bodies and .npz responses, against the JSON answers and malformed bodies."""

import io

import numpy as np
import pytest

from service.http.payloads import NPY, NPZ


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)  # allow_pickle only so the object-dtype case can be written
    return buffer.getvalue()


def post_npy(client, path, array, accept="application/json", **params):
    return client.post(path, content=npy(array), params=params, headers={"content-type": NPY, "accept": accept})


def npz(response) -> dict:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == NPZ
    with np.load(io.BytesIO(response.content), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def test_encode_npy_in_npz_out_equals_json(client):
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    expected = client.post("/encode", json={"model": "linear:1", "x": x.tolist(), "samples": 2, "seed": 3}).json()
    got = npz(post_npy(client, "/encode", x, NPZ, model="linear:1", samples=2, seed=3))
    assert str(got["model"]) == "linear:1"
    for field in ("mu", "logvar", "z"):
        assert got[field].dtype == np.float32
        assert np.array_equal(got[field], np.array(expected[field], np.float32))


def test_npy_body_with_json_response(client):
    z = np.zeros((2, 3), np.float32)
    body = post_npy(client, "/decode", z, model="linear").json()
    assert body == client.post("/decode", json={"model": "linear", "z": z.tolist()}).json()


def test_loglik_binary_both_ways_equals_json(client):
    x = np.random.default_rng(1).standard_normal((3, 5))
    expected = client.post("/loglik", json={"model": "linear:2", "x": x.tolist(), "k": 50, "seed": 4}).json()
    got = npz(post_npy(client, "/loglik", x, NPZ, model="linear:2", k=50, seed=4))
    assert int(got["k"]) == 50 and str(got["model"]) == "linear:2"
    for field in ("loglik", "stderr", "elbo"):
        assert got[field].dtype == np.float64 and got[field].tolist() == expected[field]


def test_json_request_with_npz_response(client):
    got = npz(client.post("/sample", json={"model": "linear", "n": 3, "seed": 1}, headers={"accept": NPZ}))
    assert got["z"].shape == (3, 3) and got["x"].shape == (3, 5)


@pytest.mark.parametrize("array", [
    np.asfortranarray(np.arange(10, dtype=np.float64).reshape(2, 5)),
    np.arange(10, dtype=">f4").reshape(2, 5),  # big-endian
    np.arange(10, dtype=np.uint8).reshape(2, 5),
    np.arange(10, dtype=np.float16).reshape(1, 2, 5)[0],
])
def test_any_numeric_dtype_and_memory_order_reads_as_its_values(client, array):
    expected = client.post("/encode", json={"x": np.asarray(array, np.float64).tolist()}).json()
    assert post_npy(client, "/encode", array).json() == expected


@pytest.mark.parametrize(("body", "message"), [
    (b"not numpy at all", "x: not a .npy array"),
    (npy(np.zeros((2, 5), np.float32))[:-4], "x: the header promises [2, 5] of <f4 (40 bytes) but 36 bytes follow"),
    (npy(np.zeros((2, 5), np.float32)) + b"\0", "but 41 bytes follow"),
    (npy(np.array([[{"a": 1}]], dtype=object)), "x: dtype |O is not a plain number type"),
    (npy(np.zeros((2, 5), np.complex64)), "x: dtype <c8 is not a plain number type"),
    (npy(np.zeros(2, dtype=[("a", "<f4"), ("b", "<f4")])), "is not a plain number type"),
])
def test_malformed_npy_bodies_are_400s_that_say_what_to_send(client, body, message):
    response = client.post("/encode", content=body, headers={"content-type": NPY})
    assert response.status_code == 400 and message in response.json()["detail"], response.text
    assert "numpy.save" in response.json()["detail"]


@pytest.mark.parametrize(("array", "params", "message"), [
    (np.zeros((2, 4), np.float32), {}, "x: each point has shape [4]; this model takes [5]"),
    (np.zeros((), np.float32), {}, "x: a single number"),
    (np.zeros((0, 5), np.float32), {}, "x: empty batch"),
    (np.full((1, 5), np.nan, np.float32), {}, "x[0]: holds NaN"),
    (np.zeros((1, 5), np.float32), {"samples": "two"}, "samples: Input should be a valid integer"),
    (np.zeros((1, 5), np.float32), {"sample": "2"}, "sample: Extra inputs are not permitted"),
])
def test_npy_values_and_query_parameters_are_checked(client, array, params, message):
    response = post_npy(client, "/encode", array, **params)
    assert response.status_code == 422 and message in response.json()["detail"], response.text


def test_query_parameters_also_work_with_json_but_not_twice(client):
    x = [[0.5] * 5]
    from_query = client.post("/loglik", params={"k": "20", "seed": "2"}, json={"x": x}).json()
    assert from_query == client.post("/loglik", json={"x": x, "k": 20, "seed": 2}).json()
    twice = client.post("/loglik", params={"k": "20"}, json={"x": x, "k": 30})
    assert twice.status_code == 422 and "k: given in both the query string and the body" in twice.json()["detail"]


def test_other_media_types_are_refused_with_the_ones_taken(client):
    response = client.post("/encode", content=b"x=1", headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert "send application/json, or the array 'x' as application/x-npy" in response.json()["detail"]


def test_a_large_npy_body_is_refused_before_it_is_read(repository, make_client):
    client = make_client(repository, max_body_bytes=4096)
    response = post_npy(client, "/encode", np.zeros((200, 5), np.float32))
    assert response.status_code == 413 and "VAE_MAX_BODY_BYTES" in response.json()["detail"]
