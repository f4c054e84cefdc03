"""Replicas behind HAProxy on this machine (tests/service/cluster.py): the scenarios of
tests/service/test_replicas.py, with the kill repeated, and a control: the same rolling restart without
VAE_DRAIN_READY_DELAY_S. Prints the table; --record writes it into docs/RELIABILITY.md (section "replicas").

    .venv/bin/python bench/replicas.py [--record] [--clients 6] [--kills 3]
"""

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import replace_section  # noqa: E402
from tests.service import replica_scenarios as scenarios  # noqa: E402
from tests.service.cluster import FRONTENDS, READY_DELAY_S, RELOAD_INTERVAL_S, start_cluster  # noqa: E402

DOC = ROOT / "docs" / "RELIABILITY.md"


def failed_by_frontend(report) -> str:
    per = {name: report.answered[name] + report.failed(name) for name in FRONTENDS}
    return ", ".join(f"{name} {report.failed(name)} of {per[name]}" for name in FRONTENDS)


def span(values) -> str:
    values = list(values)
    return f"{min(values):.2f}-{max(values):.2f} s"


def restart_row(result: dict) -> str:
    steps = result["steps"]
    return (f"failed: {failed_by_frontend(result['load'])}; each replica out of every backend "
            f"{span(s['out_of_rotation_s'] for s in steps)} after SIGTERM, exited (code "
            f"{', '.join(str(s['exit_code']) for s in steps)}) after {span(s['exited_s'] for s in steps)}, ready "
            f"again {span(s['ready_s'] for s in steps)} after its start, back in rotation "
            f"{span(s['back_s'] for s in steps)} after SIGTERM")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="write the table into docs/RELIABILITY.md")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--kills", type=int, default=3)
    args = parser.parse_args()
    rows = []
    cluster = start_cluster(Path(tempfile.mkdtemp(prefix="replicas-")))
    try:
        rows.append(("3 replicas and HAProxy started, every replica in rotation", f"{cluster.started_in_s:.1f} s"))
        cache = scenarios.cache_shared(cluster)
        rows.append(("/loglik (1 point, k = 1000) computed on r0, then asked of r1 and r2",
                     f"r0: a miss, {cache['computed_ms']:.0f} ms; r1, r2: hits (vae_cache_hits_total +1 each, no "
                     f"miss), identical answers: {cache['identical']}, slowest {cache['hit_ms']:.0f} ms"))
        restart = scenarios.rolling_restart(cluster, args.clients)
        rows.append((f"rolling restart of the 3 under {args.clients} clients of mixed load, "
                     f"VAE_DRAIN_READY_DELAY_S = {READY_DELAY_S:g}", restart_row(restart)))
        version = scenarios.new_version(cluster)
        served = ", ".join(f"{name} {s:.2f} s" for name, s in sorted(version["served_after_s"].items()))
        answers = sum(version["labels"].values())
        rows.append((f"digits-binary/2 renamed into the shared repository (VAE_RELOAD_INTERVAL_S = "
                     f"{RELOAD_INTERVAL_S:g}) under {answers} checked answers",
                     f"served by {served} after it appeared; answers naming one version with the other's numbers: "
                     f"{len(version['mixed'])}; failed: {len(version['failures'])}; version 1 after every replica "
                     f"switched: {version['old_after_switch']} of {version['answers_after_switch']}"))
        for kill in range(args.kills):
            result = scenarios.replica_killed(cluster, args.clients, victim=kill % len(cluster.replicas))
            rows.append((f"SIGKILL of one replica under {args.clients} clients (round {kill + 1})",
                         f"out of rotation after {result['out_of_rotation_s']:.2f} s, back {result['back_s']:.1f} s "
                         f"after the kill; failed (load from 1 s before the kill to 1 s after its return): "
                         f"{failed_by_frontend(result['load'])}"))
    finally:
        cluster.close()
    control = start_cluster(Path(tempfile.mkdtemp(prefix="replicas-control-")), ready_delay_s=0)
    try:
        result = scenarios.rolling_restart(control, args.clients)
        rows.append(("control: the same rolling restart with VAE_DRAIN_READY_DELAY_S = 0", restart_row(result)))
    finally:
        control.close()

    machine = f"{platform.node()} ({os.cpu_count()} cores, {platform.machine()})"
    text = (f"Measured {datetime.date.today()} on {machine}, shipped models (digits, digits-binary, "
            f"digits-binary-background) copied into one repository, with `.venv/bin/python bench/replicas.py "
            f"--clients {args.clients} --kills {args.kills}`. Failed: a status other than 200 or a connection "
            f"error, through each of HAProxy's frontends: `bare` retries nothing, `redispatch` retries a failed "
            f"connection on another replica, `replay` also replays a request a replica closed on without an "
            f"answer.\n\n| scenario | result |\n|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows))
    print(text)
    if args.record:
        replace_section("replicas", text, DOC)
        print(f"wrote section replicas of {DOC}")


if __name__ == "__main__":
    main()
