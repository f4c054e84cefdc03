"""Never a 200 with null: a model's NaN or infinity is a 422 that says so, and is never cached."""

import pytest


@pytest.mark.parametrize("path, body, field", [
    ("/decode", {"model": "linear:1", "z": [[3e38, 3e38, 3e38], [0, 0, 0]]}, "mean[0]"),
    ("/sample", {"model": "linear:1", "n": 1, "seed": 1, "temperature": 1.0, "mode": "sample"}, None),
    ("/loglik", {"model": "linear:1", "x": [[1e30] * 5], "k": 10}, "loglik[0]"),
])
def test_non_finite_outputs_are_refused_and_not_cached(client, path, body, field):
    if field is None:  # a finite answer stays a 200: the check refuses only what JSON cannot carry
        assert client.post(path, json=body).status_code == 200
        return
    for _ in range(2):  # the second time too: nothing was cached
        r = client.post(path, json=body)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert detail.startswith(field) and "NaN or infinity" in detail and "linear:1" in detail
    assert 'vae_cache_hits_total{operation="' + path[1:] + '"}' not in client.get("/metrics").text
    ready = client.get("/health/ready").json()
    assert ready["cache"]["entries"] == 0
