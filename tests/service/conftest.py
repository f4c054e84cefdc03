import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.service.handmade import LinearGaussian, OneDimensionalBernoulli


@pytest.fixture
def repository(tmp_path):
    """A repository of hand-built models: linear:1 (exact posterior), linear:2 (a poor proposal), bern1d:1."""
    LinearGaussian().write(tmp_path, "linear", 1)
    LinearGaussian(proposal_shift=0.4, proposal_widen=2.0).write(tmp_path, "linear", 2)
    OneDimensionalBernoulli().write(tmp_path)
    return tmp_path


@pytest.fixture
def make_client():
    clients = []

    def make(repository, **overrides):
        # The hand-built models are tiny: cache every result (VAE_CACHE_MIN_WORK=0) so that the cache's behaviour
        # is tested on them; test_cache checks the default threshold.
        settings = Settings(model_repository=repository,
                            **{"default_model": "linear", "cache_min_work": 0, **overrides})
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(repository, make_client):
    return make_client(repository)
