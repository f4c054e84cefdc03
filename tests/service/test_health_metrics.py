"""GET /health/live, GET /health/ready and GET /metrics (service/http/routes/health.py)."""


def test_health(client, tmp_path, make_client):
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["cache"] == {"backend": "memory", "state": "ok", "entries": 0, "bytes": 0}
    assert ready.json()["provider"] == "CPUExecutionProvider"
    (tmp_path / "empty").mkdir()
    empty = make_client(tmp_path / "empty")
    assert empty.get("/health/ready").status_code == 503


def test_metrics_count_requests_cache_hits_and_batch_sizes(client):
    for _ in range(2):
        client.post("/loglik", json={"model": "linear:1", "x": [[0.0] * 5] * 3, "k": 10})
    client.post("/encode", json={"model": "nope", "x": [[0.0] * 5]})
    text = client.get("/metrics").text
    assert 'vae_cache_misses_total{operation="loglik"} 1.0' in text
    assert 'vae_cache_hits_total{operation="loglik"} 1.0' in text
    assert 'vae_http_requests_total{endpoint="/loglik",method="POST",status="200"} 2.0' in text
    assert 'vae_http_requests_total{endpoint="/encode",method="POST",status="404"} 1.0' in text
    assert 'vae_batch_size_sum{operation="loglik"} 6.0' in text
    assert 'vae_http_request_duration_seconds_count{endpoint="/loglik"} 2.0' in text
