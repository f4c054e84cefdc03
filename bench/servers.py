"""The servers the HTTP benchmarks compare: ours (`python -m service`) and the naive peers, each on a free
loopback port, in a process group of its own (stopping it stops its workers too). Every server still running
when the benchmark exits, however it exits, is stopped; the kernel stops a server whose benchmark was killed.
"""

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
MODEL = Path("models/digits/1")  # relative to ROOT: the files both sides serve
SHARED_PEERS = Path(os.path.relpath((ROOT / ".." / "shared" / "peers").resolve(), ROOT))  # ../shared/peers
OUR_PEERS = Path("bench/peers")
PEERS = {  # endpoint: (folder, module, model files by environment variable)
    "encode": (SHARED_PEERS, "fastapi_orjson", {"ENCODER_ONNX": "encoder.onnx"}),
    "decode": (OUR_PEERS, "decode_orjson", {"DECODER_ONNX": "decoder.onnx"}),
    "loglik": (OUR_PEERS, "loglik_orjson", {"ENCODER_ONNX": "encoder.onnx", "DECODER_ONNX": "decoder.onnx"}),
}
SET_FOR_OURS = ("VAE_HOST", "VAE_PORT", "VAE_WORKERS", "VAE_LOG_LEVEL", "VAE_MODEL_REPOSITORY", "VAE_REDIS_URL")
_running: set["Server"] = set()


@dataclass(eq=False)
class Server:
    label: str
    command: list[str]
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the benchmark dies, even by SIGKILL (Linux prctl)."""
    os.setsid()
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def start(label: str, command: list[str], env: dict[str, str], port: int, ready_path: str,
          cwd: Path = ROOT) -> Server:
    """Run `command` from the repository root (or `cwd`), and return once GET ready_path answers 200."""
    log = Path(tempfile.mkstemp(prefix="bench-server-", suffix=".log")[1])
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                   preexec_fn=_die_with_parent)
    server = Server(label, command, process, port, log)
    _running.add(server)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(server.url + ready_path, timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop(server)
    raise RuntimeError(f"{label} did not become ready ({' '.join(command)}); its log {log} ends:\n"
                       + log.read_text()[-3000:])


def stop(server: Server) -> None:
    """SIGTERM to the server's process group, SIGKILL after 20 s; returns once its port is free."""
    _running.discard(server)
    for signal_number, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(server.process.pid, signal_number)
        except ProcessLookupError:
            break
        try:
            server.process.wait(wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", server.port)) != 0:
                break
        time.sleep(0.1)
    server.log.unlink(missing_ok=True)


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        stop(server)


def exit_cleanly_on_sigterm() -> None:
    """For a benchmark's main(): SIGTERM runs its cleanup (context managers, atexit) as Ctrl-C does."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def our_environment(port: int, workers: int, overrides: dict[str, str], code: Path = ROOT) -> dict[str, str]:
    """The caller's environment with the in-process cache (no VAE_REDIS_URL), the shipped models, quiet logs."""
    env = {name: value for name, value in os.environ.items() if name != "VAE_REDIS_URL"}
    env.update(VAE_HOST="127.0.0.1", VAE_PORT=str(port), VAE_WORKERS=str(workers), VAE_LOG_LEVEL="warning",
               VAE_MODEL_REPOSITORY=str(ROOT / "models"), PYTHONPATH=str(code))
    env.update(overrides)
    return env


@contextmanager
def ours(workers: int = 1, overrides: dict[str, str] | None = None, label: str = "ours", code: Path = ROOT):
    """`python -m service` with VAE_WORKERS=workers, plus any VAE_* overrides (a variant of ours); `code`: another
    checkout of the project to serve instead of this one (an earlier commit, side by side), the same models."""
    port = free_port()
    server = start(label, [sys.executable, "-m", "service"], our_environment(port, workers, overrides or {}, code),
                   port, "/health/ready", cwd=code)
    try:
        yield server
    finally:
        stop(server)


def check_peers(endpoints: list[str]) -> None:
    """Exit, saying where the peers belong, when one of those of `endpoints` is missing."""
    for folder, module, _ in (PEERS[endpoint] for endpoint in endpoints):
        if not (ROOT / folder / f"{module}.py").is_file():
            raise SystemExit(f"the peer {folder / module}.py is missing: the shared peers live in ../shared/peers "
                             "next to the repository (/work/shared on the project's machines)")


@contextmanager
def peer(endpoint: str, workers: int = 1):
    """The naive peer of `endpoint` under uvicorn, serving the same model files as ours."""
    check_peers([endpoint])
    folder, module, files = PEERS[endpoint]
    port = free_port()
    env = {**os.environ, **{variable: str(MODEL / name) for variable, name in files.items()}}
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(folder), f"{module}:app", "--port", str(port),
               "--log-level", "warning"] + (["--workers", str(workers)] if workers > 1 else [])
    server = start(f"peer {module}", command, env, port, "/openapi.json")
    try:
        yield server
    finally:
        stop(server)


def cpu_seconds(server: Server) -> float:
    """CPU time used so far by the server's processes (its process group), from /proc."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # from field 3 (state) on
        except OSError:
            continue  # a process that ended meanwhile
        if int(fields[2]) == server.process.pid:  # field 5: the process group
            total += int(fields[11]) + int(fields[12])  # fields 14, 15: user and system time, in ticks
    return total / os.sysconf("SC_CLK_TCK")


def wait_until_idle(server: Server, timeout_s: float = 60.0) -> None:
    """Return once the server's processes use under 5% of a core over 0.5 s: the work of requests a load
    generator abandoned (a warm-up's last ones) is done and does not run into the next measurement."""
    deadline, used = time.monotonic() + timeout_s, cpu_seconds(server)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        previous, used = used, cpu_seconds(server)
        if used - previous < 0.025:
            return
    print(f"warning: {server.label} still busy {timeout_s:g} s after its load stopped", file=sys.stderr)


def cache_hits(server: Server) -> int:
    """Results our server answered from its cache so far (vae_cache_hits_total, all operations)."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    return round(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith("vae_cache_hits_total{")))
