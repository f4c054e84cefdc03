"""The README's serve command for real: uvicorn in a subprocess, HTTP over loopback, a clean log."""

import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np

from service.settings import PROJECT_ROOT
from tests.service.network import free_port


def test_served_over_http_with_a_quiet_log(tmp_path):
    port = free_port()
    env = {**os.environ, "VAE_PORT": str(port), "VAE_REDIS_URL": "redis://127.0.0.1:6379/14"}
    log = open(tmp_path / "server.log", "w+")
    server = subprocess.Popen([sys.executable, "-m", "service"], cwd=PROJECT_ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.2)
        ready = httpx.get(f"{base}/health/ready").json()
        assert ready["cache"]["backend"] == "redis" and ready["models"] == [
            "digits:1", "digits-binary:1", "digits-binary-background:1", "digits-binary-discrete:1",
            "digits-binary-ratio:1", "digits-mog:1", "mnist-binary:1", "mnist-binary-background:1",
            "mnist-binary-ratio:1"]
        point = (np.arange(64) % 3 == 0).astype(int)
        single = httpx.get(f"{base}/loglik", params={"model": "digits-binary", "x": ",".join(map(str, point)),
                                                     "k": 500}).json()
        batch = httpx.post(f"{base}/loglik", json={"model": "digits-binary", "x": [point.tolist()], "k": 500}).json()
        assert single["loglik"] == batch["loglik"][0] and single["model"] == "digits-binary:1"
        assert httpx.post(f"{base}/encode", json={"x": [[0.2] * 64]}).json()["model"] == "digits:1"
        assert "vae_http_requests_total" in httpx.get(f"{base}/metrics").text
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(20)
        log.seek(0)
        output = log.read()
        log.close()
    assert "Application startup complete" in output
    for noise in ("libonnxruntime_providers_cuda", "Failed to create CUDAExecutionProvider", "Traceback"):
        assert noise not in output, output


def test_a_wrong_setting_stops_the_server_with_its_name():
    env = {**os.environ, "VAE_MODEL_REPOSITORY": "/nonexistent", "VAE_MAX_K": "0"}
    result = subprocess.run([sys.executable, "-m", "service"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "VAE_MODEL_REPOSITORY" in result.stderr and "VAE_MAX_K" in result.stderr
