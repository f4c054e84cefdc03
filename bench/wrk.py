"""wrk runs for the HTTP benchmarks: Lua scripts that give every request fresh data (so no answer comes from a
cache) or, on purpose, the same body; the figures of a run come from the script's own `done` report rather
than from wrk's text.

wrk runs one Lua state per thread; each seeds its generator from its thread number, so two threads never
send the same sequence of points.
"""

import json
import subprocess
import tempfile
from dataclasses import dataclass

COMMON = r"""
local threads = 0
function setup(thread) threads = threads + 1; thread:set("thread_number", threads) end
function init(args) math.randomseed(os.time() * 1000 + thread_number) end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_FIGURES {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"non_2xx": %d, "socket_errors": %d}\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""

POINT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local prefix, suffix, width, low, span = %s, %s, %d, %r, %r
function request()
  local v = {}
  for i = 1, width do v[i] = string.format("%%.4f", low + span * math.random()) end
  return wrk.format(nil, nil, nil, prefix .. table.concat(v, ",") .. suffix)
end
"""

SEEDED = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local prefix, suffix, fresh = %s, %s, %s
function request()
  local seed = fresh and tostring(math.random(1, 1073741824)) or "0"
  return wrk.format(nil, nil, nil, prefix .. seed .. suffix)
end
"""


@dataclass
class WrkFigures:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds


def lua_string(text: str) -> str:
    """A Lua string literal of any text (decimal escapes for anything but printable ASCII)."""
    data = text.encode()
    return '"' + "".join(chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else f"\\{b:03d}" for b in data) + '"'


def point_script(json_prefix: str, json_suffix: str, width: int, low: float, high: float) -> str:
    """Each request: json_prefix, `width` fresh uniform numbers in [low, high) with 4 decimals, json_suffix."""
    return COMMON + POINT % (lua_string(json_prefix), lua_string(json_suffix), width, low, high - low)


def seeded_script(json_prefix: str, json_suffix: str, fresh: bool) -> str:
    """Each request: json_prefix, a seed, json_suffix; the seed is fresh every request, or always 0."""
    return COMMON + SEEDED % (lua_string(json_prefix), lua_string(json_suffix), "true" if fresh else "false")


def run_wrk(url: str, script: str, seconds: float, connections: int, threads: int,
            timeout_s: float = 10.0) -> WrkFigures:
    """`wrk -t<threads> -c<connections> -d<seconds>s --latency -s <script> <url>`; raises when wrk fails."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency",
                   f"--timeout={timeout_s:g}s", "-s", lua.name, url]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + timeout_s + 30)
        except FileNotFoundError:
            raise SystemExit("wrk is not installed: apt-get install wrk (Debian, Ubuntu) or brew install wrk") from None
    line = next((line for line in done.stdout.splitlines() if line.startswith("WRK_FIGURES ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({' '.join(command)}):\n{done.stdout}\n{done.stderr}")
    figures = json.loads(line.split(" ", 1)[1])
    return WrkFigures(figures["requests"], figures["duration_us"] / 1e6, figures["p50_us"] / 1e3,
                      figures["p99_us"] / 1e3, figures["non_2xx"], figures["socket_errors"])
