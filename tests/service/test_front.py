"""The front every request passes (service.http.front): its steps in their order, the labels its refusals are
counted with, and the body limits whatever the Content-Length header says."""

import asyncio
import re

from service.http.limits import BodyLimits
from service.settings import Settings

POINT = {"model": "linear:1", "x": [[0.5] * 5]}


def counted(client, endpoint, status):
    pattern = rf'vae_http_requests_total\{{endpoint="{re.escape(endpoint)}",method="POST",status="{status}"\}} (\S+)'
    found = re.search(pattern, client.get("/metrics").text)
    return float(found.group(1)) if found else 0.0


def test_the_body_limits_answer_before_a_bad_request_timeout(repository, make_client):
    client = make_client(repository, max_body_bytes=1024)
    oversize = client.post("/encode", content=b"{" + b" " * 2000 + b"}",
                           headers={"content-type": "application/json", "x-request-timeout": "soon"})
    assert oversize.status_code == 413 and "VAE_MAX_BODY_BYTES" in oversize.json()["detail"]
    bad_timeout = client.post("/encode", json=POINT, headers={"x-request-timeout": "soon"})
    assert bad_timeout.status_code == 400 and "X-Request-Timeout" in bad_timeout.json()["detail"]


def test_refusals_before_a_route_runs_are_counted_unmatched_and_answers_by_their_route(repository, make_client):
    client = make_client(repository, max_body_bytes=1024)
    client.post("/encode", content=b"[" + b"0," * 1000 + b"0]", headers={"content-type": "application/json"})
    client.post("/encode", json=POINT, headers={"x-request-timeout": "-1"})
    assert counted(client, "unmatched", 413) == 1 and counted(client, "unmatched", 400) == 1
    assert client.post("/encode", json=POINT).status_code == 200
    assert counted(client, "/encode", 200) == 1 and counted(client, "/encode", 413) == 0


def test_a_length_that_is_not_a_number_is_counted_as_the_body_comes():
    """httptools refuses such a header, but the app may run under another server: the bytes are still counted."""
    limits = BodyLimits(Settings(max_body_bytes=1024, max_inflight_body_bytes=1 << 20))

    def chunks(*sizes):
        messages = [{"type": "http.request", "body": b"x" * size, "more_body": i < len(sizes) - 1}
                    for i, size in enumerate(sizes)]

        async def receive():
            return messages.pop(0)
        return receive

    for headers in ([(b"content-length", b"abc")], []):
        refused, held = asyncio.run(limits.read({"headers": headers}, chunks(600, 600)))
        assert refused is limits.too_large and held == 600
        limits.release(held)
        body, held = asyncio.run(limits.read({"headers": headers}, chunks(300, 300)))
        assert body == b"x" * 600 and held == 600 and limits.in_flight == 600
        limits.release(held)
    assert limits.in_flight == 0
