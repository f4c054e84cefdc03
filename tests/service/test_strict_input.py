"""Strict input: what is not plainly a number is refused up front, with the field and the fix, never a null."""

import io
import json

import numpy as np
import pytest

from service.errors import InvalidInput
from service.http.codecs import refuse_booleans

JSON = {"content-type": "application/json"}


def post(client, path, raw: str | bytes, headers=JSON):
    return client.post(path, content=raw, headers=headers)


@pytest.mark.parametrize("path, raw, names", [
    ("/loglik", '{"x": [[0, 0, 0, true, 0]]}', "x[0][3]: true is not a number"),
    ("/loglik", '{"x": [[0, 0, 0, 0, 0], [0, false, 0, 0, 0]]}', "x[1][1]: false is not a number"),
    ("/loglik", '{"x": [[true, true, true, true, true]]}', "x[0][0]: true is not a number"),
    ("/loglik", '{"x": [0, 0, 0, 0, true]}', "x[4]: true is not a number"),
    ("/encode", '{"x": [[0, 0, 0, 0, 0], [[0, 0], [0, 0, true]]]}', "x[1][1][2]: true is not a number"),
    ("/decode", '{"z": [[0, 0, false]]}', "z[0][2]: false is not a number"),
])
def test_json_booleans_in_arrays_are_422_naming_the_element(client, path, raw, names):
    response = post(client, path, raw)
    assert response.status_code == 422, response.text
    assert names in response.json()["detail"]


def test_the_words_true_and_false_elsewhere_do_not_trouble_the_numbers(client):
    response = post(client, "/loglik", '{"x": [[0, 1, 0, 1, 0]], "k": 10, "model": "linear"}   ')
    assert response.status_code == 200
    # "true" only inside a string: the walk runs, finds no boolean, and the request is served.
    response = post(client, "/loglik", '{"x": [[0, 1, 0, 1, 0]], "k": 10, "model": "true"}')
    assert response.status_code == 404 and "no model 'true'" in response.json()["detail"]


def test_npy_bodies_of_dtype_bool_stay_accepted(client):
    buffer = io.BytesIO()
    np.save(buffer, np.array([[True, False, True, False, True]]))
    response = client.post("/loglik", params={"k": 10}, content=buffer.getvalue(),
                           headers={"content-type": "application/x-npy"})
    assert response.status_code == 200, response.text
    ones = client.post("/loglik", json={"x": [[1, 0, 1, 0, 1]], "k": 10}).json()
    assert response.json()["loglik"] == ones["loglik"]


def test_the_boolean_walk_survives_deep_nesting():
    deep = [True]
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidInput, match=r"x(\[0\]){5000}\[0\]: true is not a number"):
        refuse_booleans(deep, "x")


# GET /loglik x ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("x, names", [
    ("0,0,0,0,1_0", "x: value 4 ('1_0') is not a number"),
    ("0,0,0,0,nan", "x: value 4 ('nan') is not a number"),
    ("0,0,0,0,NaN", "x: value 4 ('NaN') is not a number"),
    ("0,0,0,0,inf", "x: value 4 ('inf') is not a number"),
    ("0,0,0,0,-Infinity", "x: value 4 ('-Infinity') is not a number"),
    ("0,0,0,0,0x10", "x: value 4 ('0x10') is not a number"),
    (" 1,0,0,0,0", "x: value 0 (' 1') is not a number"),
    ("0,0,0,0,1 ", "x: value 4 ('1 ') is not a number"),
    ("0,0,,0,0", "x: value 2 is empty"),
    ("0,0,0,0,", "x: value 4 is empty"),
    ("", "x: value 0 is empty"),
    ("0,0,0,0,true", "x: value 4 ('true') is not a number"),
    ("0,0,0,0,null", "x: value 4 ('null') is not a number"),
    ("0,0,0,0,[1]", "x: value 4 ('[1]') is not a number"),
    ("0,0,0,0,+1", "x: value 4 ('+1') is not a number"),
    ("0,0,0,0,.5", "x: value 4 ('.5') is not a number"),
    ("0,0,0,0,1.", "x: value 4 ('1.') is not a number"),
    ("0,0,0,0,1e999", "x: value 4 ('1e999') is too large for a number"),
])
def test_query_x_is_exactly_json_numbers(client, x, names):
    response = client.get("/loglik", params={"x": x, "k": 10})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert names in detail and ("x=0,0.5,-1.5e-3" in detail or "finite" in detail)


@pytest.mark.parametrize("x", ["0,0.5,-1,1e-3,2E+2", "-0,0,0,0,0", "0,1,0,1,0"])
def test_query_x_takes_every_json_number(client, x):
    response = client.get("/loglik", params={"x": x, "k": 10})
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["loglik"], float)


@pytest.mark.parametrize("name, value", [("k", "1_0"), ("k", " 10"), ("k", "+10"), ("k", "10.0"), ("seed", "0x1"),
                                          ("seed", "1e3")])
def test_query_integers_are_plain_digits(client, name, value):
    response = client.get("/loglik", params={"x": "0,0,0,0,0", name: value})
    assert response.status_code == 422
    assert f"{name}: Input should be a valid integer in plain digits (e.g. 10), not {value!r}" in response.json()["detail"]


def test_npy_query_integers_are_plain_digits_too(client):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((1, 5), np.float32))
    response = client.post("/loglik", params={"k": "1_0"}, content=buffer.getvalue(),
                           headers={"content-type": "application/x-npy"})
    assert response.status_code == 422 and "k: Input should be a valid integer" in response.json()["detail"]


# POST /sample ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/x-npy",
                                          "multipart/form-data"])
def test_sample_with_another_content_type_is_415_saying_what_to_send(client, content_type):
    response = post(client, "/sample", '{"n": 1}', headers={"content-type": content_type})
    assert response.status_code == 415
    assert "content-type" in response.json()["detail"] and "application/json" in response.json()["detail"]


@pytest.mark.parametrize("raw", ["{n: 1", "", "[1", '{"n": 1}}'])
def test_sample_with_malformed_json_is_400(client, raw):
    response = post(client, "/sample", raw)
    assert response.status_code == 400 and "body: not valid JSON" in response.json()["detail"]


@pytest.mark.parametrize("raw, names", [
    ('{"n": 1, "temperature": NaN}', "temperature: NaN is not allowed"),
    ('{"n": 1, "temperature": Infinity}', "temperature: infinity is not allowed"),
    ('{"n": 1, "temperature": -Infinity}', "temperature: infinity is not allowed"),
    ('{"n": 1, "temperature": 10.5}', "temperature: Input should be less than or equal to 10"),
    ('{"n": 1, "temperature": -0.1}', "temperature: Input should be greater than or equal to 0"),
    ('{"n": 1, "temperature": true}', "temperature: Input should be a valid number"),
    ('{"n": 1, "temperature": "1"}', "temperature: Input should be a valid number"),
    ('{"n": true}', "n: Input should be a valid integer"),
    ('{"n": 1.5}', "n: Input should be a valid integer"),
    ('{"n": "2"}', "n: Input should be a valid integer"),
    ('{"n": 1, "seed": false}', "seed: Input should be a valid integer"),
    ('{"n": 1, "size": 3}', "size: Extra inputs are not permitted"),
    ('[1]', "body: must be a JSON object"),
])
def test_sample_fields_are_strict(client, raw, names):
    response = post(client, "/sample", raw)
    assert response.status_code == 422, response.text
    assert names in response.json()["detail"]


@pytest.mark.parametrize("temperature", [0, 0.0, 1, 10, 10.0])
def test_sample_takes_temperatures_from_0_to_10(client, temperature):
    response = client.post("/sample", json={"n": 2, "seed": 1, "temperature": temperature, "mode": "sample"})
    assert response.status_code == 200, response.text
    assert np.isfinite(np.asarray(response.json()["x"], dtype=float)).all()


def test_sample_without_a_content_type_is_read_as_json(client):
    response = client.post("/sample", content=json.dumps({"n": 3, "seed": 0}))
    assert response.status_code == 200 and len(response.json()["z"]) == 3
