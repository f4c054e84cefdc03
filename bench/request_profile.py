"""Where a request's CPU time goes: our server (or the naive peer) under py-spy while wrk drives the
single-point load of bench/http_speed.py, each frame given as ms of CPU per request served.

    .venv/bin/python bench/request_profile.py [--endpoint encode] [--seconds 10] [--peer] [--code PATH] [--idle]
                                      [--output /tmp] [--top 25] [-- more py-spy record options, e.g. --nonblocking]

Starts the server (one worker, in-process cache), warms it up, attaches `py-spy record --pid` at --rate Hz,
drives `wrk -t2 -c64` for --seconds, stops py-spy and prints: the server's CPU per request from /proc (every
thread, ONNX Runtime's own included), py-spy's samples per request by thread, and the top frames by
inclusive and by own time (samples / rate / requests). py-spy sees Python threads only, and by default leaves
out idle ones (waiting on a lock, a socket, a sleep): the figures are then CPU time. With --idle they count
idle threads too: wall time per thread, not CPU. The raw profile (collapsed stacks, one line per stack:
speedscope.app and flamegraph.pl read it) is written to OUTPUT/profile-<server>-<endpoint>.txt.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import servers  # noqa: E402
from bench.http_speed import POINTS, WARM_UP_S  # noqa: E402
from bench.wrk import point_script, run_wrk  # noqa: E402


def read_stacks(path: Path) -> Counter:
    """py-spy's raw format, `frame;frame;...;leaf count` per line -> {(frames, ...): samples}."""
    stacks = Counter()
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames:
            stacks[tuple(frames.split(";"))] += int(count)
    return stacks


def top_frames(stacks: Counter, per_request_ms: float, count: int) -> str:
    """The `count` frames with the most samples, inclusive (anywhere on the stack) and own (the leaf). The
    outermost frames of each thread (those on as many of its samples as its most common frame: the
    interpreter's start and the server's loop) are left out of the inclusive list."""
    by_thread, own = {}, Counter()
    for (thread, *calls), samples in stacks.items():
        for frame in set(calls):
            by_thread.setdefault(thread, Counter())[frame] += samples
        own[calls[-1] if calls else thread] += samples
    inclusive = Counter()
    for frames in by_thread.values():
        outermost = max(frames.values())
        inclusive.update({frame: samples for frame, samples in frames.items() if samples < outermost})
    total = sum(stacks.values())
    lines = []
    for title, table in (("inclusive", inclusive), ("own", own)):
        lines.append(f"\nTop {count} frames by {title} time: ms per request, share of the samples")
        lines += [f"  {samples * per_request_ms:7.3f}  {100 * samples / total:5.1f}%  {frame}"
                  for frame, samples in table.most_common(count)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", choices=sorted(POINTS), default="encode")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of load while sampling (default 10)")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second (default 100)")
    parser.add_argument("--peer", action="store_true", help="profile the endpoint's naive peer instead of ours")
    parser.add_argument("--code", type=Path, default=servers.ROOT, help="serve ours from this checkout of the "
                        "project (an earlier commit, for before and after; default: this one)")
    parser.add_argument("--idle", action="store_true", help="count idle threads too (wall time, not CPU)")
    parser.add_argument("--output", type=Path, default=Path("/tmp"), help="folder of the raw profile (default /tmp)")
    parser.add_argument("--top", type=int, default=25, help="frames listed (default 25)")
    parser.add_argument("py_spy_options", nargs="*", help="after --: more `py-spy record` options")
    args = parser.parse_args()
    servers.exit_cleanly_on_sigterm()
    py_spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if py_spy is None:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy (the dev extra has it)")
    name = f"peer {servers.PEERS[args.endpoint][1]}" if args.peer else "ours"
    args.output.mkdir(parents=True, exist_ok=True)
    raw = args.output / f"profile-{'peer' if args.peer else 'ours'}-{args.endpoint}.txt"
    script = point_script(*POINTS[args.endpoint][:3], *POINTS[args.endpoint][3])
    path = f"/{args.endpoint}"
    with servers.peer(args.endpoint) if args.peer else servers.ours(code=args.code.resolve()) as server:
        run_wrk(server.url + path, script, WARM_UP_S, 64, 2)
        servers.wait_until_idle(server)
        command = [py_spy, "record", "--pid", str(server.process.pid), "--rate", str(args.rate), "--format", "raw",
                   "--output", str(raw), "--nolineno", "--threads", *(["--idle"] if args.idle else []),
                   *args.py_spy_options]
        spy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.0)  # attached and sampling
        if spy.poll() is not None:
            raise SystemExit(f"py-spy stopped at once ({' '.join(command)}):\n{spy.stdout.read()}")
        cpu_before = servers.cpu_seconds(server)
        figures = run_wrk(server.url + path, script, args.seconds, 64, 2)
        cpu = servers.cpu_seconds(server) - cpu_before
        spy.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
        log = spy.communicate(timeout=60)[0]
    if not raw.exists():
        raise SystemExit(f"py-spy wrote no profile ({' '.join(command)}):\n{log}")
    stacks = read_stacks(raw)
    per_request_ms = 1e3 / args.rate / figures.requests  # one sample, as ms per request
    by_thread = Counter()
    for frames, samples in stacks.items():
        by_thread[frames[0]] += samples
    what = "all Python threads, idle or not (wall time)" if args.idle else "Python threads while not idle (CPU)"
    print(f"{name}, POST {path}: wrk -t2 -c64 for {args.seconds:g} s: {figures.requests:,} requests, "
          f"{figures.rate:,.0f} req/s, p50 {figures.p50_ms:.2f} ms, p99 {figures.p99_ms:.2f} ms, "
          f"non-2xx {figures.non_2xx}")
    print(f"CPU per request, every thread of the server (/proc): {1e3 * cpu / figures.requests:.3f} ms")
    print(f"py-spy at {args.rate} Hz, {what}: {sum(stacks.values()) * per_request_ms:.3f} ms per request. py-spy "
          "counts a thread that is running or ready to run: on a busy machine its waits for a core count too, and "
          "the /proc figure is the CPU really used; blocking sampling also slows the server (-- --nonblocking).")
    print("\n".join(f"  {samples * per_request_ms:7.3f}  {thread}" for thread, samples in by_thread.most_common()))
    print(top_frames(stacks, per_request_ms, args.top))
    print(f"\nraw profile: {raw}")


if __name__ == "__main__":
    main()
