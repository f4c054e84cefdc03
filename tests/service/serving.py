"""The service as users run it: `python -m service` in a subprocess, HTTP over loopback."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from service.settings import PROJECT_ROOT
from tests.service.network import free_port


@dataclass
class RunningServer:
    url: str
    port: int
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running_server(log_dir: Path, **settings: str) -> Iterator[RunningServer]:
    """Start the server with VAE_* settings (keyword names without the prefix), wait until it is ready."""
    port = free_port()
    env = {**os.environ, "VAE_PORT": str(port), **{f"VAE_{k.upper()}": str(v) for k, v in settings.items()}}
    log_path = Path(log_dir) / f"server-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "service"], cwd=PROJECT_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    server = RunningServer(f"http://127.0.0.1:{port}", port, process, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{server.url}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, server.log()
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def start_redis(port: int) -> subprocess.Popen:
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if redis.Redis(port=port).ping():
                return server
        except redis.ConnectionError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("redis-server did not start")


class RestartableRedis:
    """A redis-server of the test's own on a free port, to kill (SIGKILL) and start again under load."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = start_redis(self.port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def restart(self, kill: bool) -> None:
        """kill=True: SIGKILL it; kill=False: start it again, empty, on the same port."""
        if kill:
            self.process.kill()
            self.process.wait(10)
        else:
            self.process = start_redis(self.port)

    def close(self) -> None:
        self.process.kill()
        self.process.wait(10)
