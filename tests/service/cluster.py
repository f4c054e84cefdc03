"""Replicas of `python -m service` on loopback sharing one Redis and one model repository, behind a real HAProxy
(Debian's `haproxy`): what a Kubernetes Deployment behind a Service or an ingress is, on one machine.

Used by tests/service/test_replicas.py (CI) and bench/replicas.py (the figures in docs/RELIABILITY.md).

The balancer has three frontends onto the same replicas, one per retry policy, so that one load measures all three:
- `bare`: no retry at all (`retries 0`): what a client sees of every failure on the way;
- `redispatch`: HAProxy's default retries of a connection that failed (the request was never sent, so this is
  safe for any request), each to another replica (`option redispatch 1`);
- `replay`: also replays a request a replica closed its connection on without answering (`retry-on
  empty-response`): safe here because every route is a pure function of its input (answers depend only on
  model, x, k and seed; nothing is written), and what turns a crash into no failed request. HAProxy can replay
  only a request it holds whole: `option http-buffer-request` waits for the body before forwarding (without it,
  1 request in 4 kills failed here: a POST whose body came in a second write, closed on without an answer).

Health checks: GET /health/ready every 500 ms (`inter`), 250 ms between the checks of a server changing state
(`fastinter`); 2 failures take a replica out (`fall 2`), 2 successes bring it back (`rise 2`). A replica that got
SIGTERM therefore leaves the rotation within about inter + fastinter + one check (under 1 s) of answering 503,
and READY_DELAY_S, how long it keeps serving after SIGTERM (VAE_DRAIN_READY_DELAY_S), is twice that: no request
is sent to it once it stops accepting. A restarted replica is back in rotation about 0.5 s after it is ready.
"""

import contextlib
import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.settings import PROJECT_ROOT
from tests.service.network import free_port
from tests.service.serving import start_redis

READY_DELAY_S = 2.0  # VAE_DRAIN_READY_DELAY_S of the replicas: 2x the balancer's time to take one out
RELOAD_INTERVAL_S = 1.0  # VAE_RELOAD_INTERVAL_S: how often each replica looks at the shared repository
FRONTENDS = ("bare", "redispatch", "replay")
BACKEND_POLICY = {
    "bare": "    retries 0\n",
    "redispatch": "    retries 3\n    option redispatch 1\n",
    "replay": "    retries 3\n    option redispatch 1\n    retry-on conn-failure empty-response\n"
              "    option http-buffer-request\n",
}
SHIPPED = ("digits", "digits-binary", "digits-binary-background")  # copied from models/ into the shared repository


@dataclass
class Replica:
    name: str
    port: int
    env: dict
    log_path: Path
    process: subprocess.Popen | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        with open(self.log_path, "a") as log:
            log.write(f"--- start {self.starts}\n")
            log.flush()
            self.process = subprocess.Popen([sys.executable, "-m", "service"], cwd=PROJECT_ROOT, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60) -> float:
        """Seconds until /health/ready answers 200."""
        start = time.monotonic()
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return time.monotonic() - start
            assert self.process.poll() is None, self.log()
            assert time.monotonic() - start < timeout, self.log()
            time.sleep(0.05)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text()[-4000:]


class HAProxy:
    def __init__(self, workdir: Path, replicas: list[Replica]):
        self.ports = {name: free_port() for name in FRONTENDS}
        self.stats_port = free_port()
        self.config_path = workdir / "haproxy.cfg"
        self.config_path.write_text(haproxy_config(self.ports, self.stats_port, replicas))
        self.log_path = workdir / "haproxy.log"
        check = subprocess.run(["haproxy", "-c", "-f", str(self.config_path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(["haproxy", "-db", "-f", str(self.config_path)], stdout=log,
                                            stderr=subprocess.STDOUT)

    def url(self, frontend: str) -> str:
        return f"http://127.0.0.1:{self.ports[frontend]}"

    def states(self) -> dict[tuple[str, str], str]:
        """(backend, server) -> "UP", "DOWN", "UP 1/2" (going down), "DOWN 1/2" (coming up)... from the stats CSV."""
        text = httpx.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2).text.lstrip("# ")
        return {(row["pxname"], row["svname"]): row["status"] for row in csv.DictReader(io.StringIO(text))
                if row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_state(self, server: str, state: str, timeout: float = 30) -> float:
        """Seconds until `server` is in `state` in every backend."""
        start = time.monotonic()
        while True:
            with contextlib.suppress(httpx.TransportError):
                states = self.states()
                if all(states[(backend, server)] == state for backend in FRONTENDS):
                    return time.monotonic() - start
            assert self.process.poll() is None, self.log_path.read_text()
            assert time.monotonic() - start < timeout, (server, state, states)
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def haproxy_config(ports: dict[str, int], stats_port: int, replicas: list[Replica]) -> str:
    servers = "".join(f"    server {r.name} 127.0.0.1:{r.port}\n" for r in replicas)
    text = f"""global
    maxconn 1024
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 1s
    option httpchk
    http-check send meth GET uri /health/ready
    http-check expect status 200
    default-server check inter 500ms fastinter 250ms downinter 500ms fall 2 rise 2

frontend stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""
    for name in FRONTENDS:
        text += f"\nfrontend {name}\n    bind 127.0.0.1:{ports[name]}\n    default_backend {name}\n"
        text += f"\nbackend {name}\n    balance roundrobin\n{BACKEND_POLICY[name]}{servers}"
    return text


@dataclass
class Cluster:
    workdir: Path
    repository: Path
    redis: subprocess.Popen
    redis_port: int
    replicas: list[Replica]
    balancer: HAProxy
    started_in_s: float = 0.0

    def close(self) -> None:
        for replica in self.replicas:
            if replica.process is not None and replica.process.poll() is None:
                replica.kill()
        self.balancer.stop()
        self.redis.kill()
        self.redis.wait(10)


def start_cluster(workdir: Path, count: int = 3, ready_delay_s: float = READY_DELAY_S) -> Cluster:
    """A fresh Redis, `count` replicas on one repository (copies of SHIPPED), HAProxy; every replica in rotation."""
    if shutil.which("haproxy") is None:
        raise RuntimeError("haproxy is not installed: `apt-get install haproxy` (.ci/run installs it when missing)")
    repository = workdir / "models"
    for name in SHIPPED:
        shutil.copytree(PROJECT_ROOT / "models" / name / "1", repository / name / "1")
    redis_port = free_port()
    redis_server = start_redis(redis_port)
    replicas = []
    for i in range(count):
        port = free_port()
        env = {**os.environ, "VAE_HOST": "127.0.0.1", "VAE_PORT": str(port), "VAE_MODEL_REPOSITORY": str(repository),
               "VAE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "VAE_DEVICE": "cpu",
               "VAE_RELOAD_INTERVAL_S": str(RELOAD_INTERVAL_S), "VAE_DRAIN_READY_DELAY_S": str(ready_delay_s),
               "VAE_DRAIN_TIMEOUT_S": "10", "VAE_KEEP_ALIVE_TIMEOUT_S": "75"}
        replicas.append(Replica(f"r{i}", port, env, workdir / f"replica-{i}.log"))
    start = time.monotonic()
    for replica in replicas:
        replica.start()
    balancer = HAProxy(workdir, replicas)
    cluster = Cluster(workdir, repository, redis_server, redis_port, replicas, balancer)
    try:
        for replica in replicas:
            replica.wait_ready()
            balancer.wait_state(replica.name, "UP")
    except BaseException:
        cluster.close()
        raise
    cluster.started_in_s = time.monotonic() - start
    return cluster
