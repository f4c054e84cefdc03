"""The direct handlers (service.http.direct): the data routes answered from the raw ASGI scope give exactly what
FastAPI gives for the same routers, and a bug inside one is a JSON 500 that the metrics count."""

import io

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.http.routes import latents, loglik, sample

POINTS = np.random.default_rng(3).standard_normal((3, 5)).round(3).tolist()
CALLS = [
    ("/encode", {"json": {"model": "linear:1", "x": POINTS, "samples": 2, "seed": 1}}),
    ("/decode", {"json": {"model": "linear:1", "z": [[0.5, -1.0, 0.25], [2.0, 0.0, -0.5]]}}),
    ("/loglik", {"json": {"model": "linear:2", "x": POINTS, "k": 50, "seed": 9}}),
    ("/sample", {"json": {"model": "linear:1", "n": 4, "seed": 2, "mode": "sample"}}),
    ("/loglik?model=linear:2&k=50", {"content": (lambda b: (np.save(b, np.asarray(POINTS)), b.getvalue())[1])(
        io.BytesIO()), "headers": {"content-type": "application/x-npy"}}),
]


def test_the_routers_mounted_in_a_plain_fastapi_app_answer_exactly_as_the_service_does(client):
    plain = FastAPI()
    plain.state.dataplane = client.app.state.dataplane
    for module in (latents, sample, loglik):
        plain.include_router(module.router)
    with TestClient(plain) as through_fastapi:
        for path, request in CALLS:
            for accept in ("application/json", "application/x-npz"):
                headers = {**request.get("headers", {}), "accept": accept}
                ours = client.post(path, **{**request, "headers": headers})
                theirs = through_fastapi.post(path, **{**request, "headers": headers})
                assert ours.status_code == theirs.status_code == 200, (path, ours.text, theirs.text)
                assert ours.headers["content-type"] == theirs.headers["content-type"]
                assert ours.content == theirs.content, path


def test_a_bug_inside_a_data_route_is_a_json_500_counted_by_the_metrics(client, monkeypatch, caplog):
    async def broken(*args, **kwargs):  # a fault the real service cannot be made to produce
        raise RuntimeError("a bug")

    monkeypatch.setattr(client.app.state.dataplane, "decode", broken)
    answer = client.post("/decode", json={"model": "linear:1", "z": [[0.0, 0.0, 0.0]]})
    assert answer.status_code == 500 and "internal error" in answer.json()["detail"]
    assert "a bug" in caplog.text  # the traceback goes to the log, not to the client
    assert 'vae_http_requests_total{endpoint="/decode",method="POST",status="500"} 1.0' in client.get("/metrics").text
    assert client.post("/encode", json={"model": "linear:1", "x": POINTS}).status_code == 200  # still serving


def test_a_path_the_lane_does_not_take_goes_on_to_fastapi(client):
    redirect = client.post("/encode/", json={"x": POINTS}, follow_redirects=False)  # FastAPI's own answer
    assert redirect.status_code == 307 and redirect.headers["location"].endswith("/encode")
    assert client.get("/encode").status_code == 405
    assert client.get("/models").status_code == 200
