"""Faults of the components the service depends on, under load: nothing a client sees may fail."""

from tests.service import scenarios
from tests.service.network import free_port
from tests.service.serving import running_server, start_redis


def test_redis_killed_and_restarted_under_load_fails_no_request(tmp_path):
    port = free_port()
    redis_server = [start_redis(port)]

    def restart(kill: bool) -> None:
        if kill:
            redis_server[0].kill()
            redis_server[0].wait(10)
        else:
            redis_server[0] = start_redis(port)

    try:
        with running_server(tmp_path, redis_url=f"redis://127.0.0.1:{port}/0", redis_retry_s=0.3) as server:
            result = scenarios.redis_killed_under_load(server, restart, clients=8, seconds=6.0)
    finally:
        redis_server[0].kill()
        redis_server[0].wait(10)
    assert set(result["statuses"]) == {200} and sum(result["statuses"].values()) > 200, result
    assert result["hits_at_end"] > result["hits_at_restart"] > 0, result  # the cache serves again by itself
