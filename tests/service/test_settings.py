"""service/settings.py: a wrong setting fails at start-up with a message that says how to fix it."""

import json

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.engine.sessions import cuda_usable
from service.settings import Settings


def test_settings_fail_fast_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        Settings(model_repository=tmp_path / "missing")
    with pytest.raises(ValueError, match="must start with redis://"):
        Settings(redis_url="localhost:6379")
    with pytest.raises(ValueError, match="device"):
        Settings(device="tpu")
    with pytest.raises(ValueError, match="VAE_DRAIN_READY_DELAY_S needs VAE_WORKERS=1"):
        Settings(drain_ready_delay_s=2, workers=2)
    if cuda_usable():  # on a GPU machine, demanding CUDA gets it
        with TestClient(create_app(Settings(device="cuda"))) as client:
            assert client.get("/health/ready").json()["provider"] == "CUDAExecutionProvider"
    else:
        with pytest.raises(RuntimeError, match="VAE_DEVICE=cuda"):
            with TestClient(create_app(Settings(device="cuda"))):
                pass
    assert json.loads(json.dumps(Settings().model_dump(mode="json")))["default_model"] == "digits"
