#!/usr/bin/env python3
"""Time corral against runc, side by side, over the container lifecycle.

How it works: the script builds a throwaway OCI bundle in a temporary directory from the
host's static busybox (Debian's busybox-static), gives each runtime its own temporary
``--root`` state directory, and then, run after run, times each runtime's command line as
a client such as containerd's shim sees it: the wall time of one ``subprocess.run`` of
the runtime's binary, start-up included.

Two things are measured. ``run`` is ``run ID`` of ``/bin/true``, attached, until it
returns. The split lifecycle uses a second bundle whose process is ``/bin/sleep 1000``:
``create``, ``start``, ``state``, ``kill ID KILL`` and ``delete`` are each timed on their
own; between ``kill`` and ``delete`` the script polls ``state`` until the status is
"stopped", untimed, because ``delete`` of a container that still runs is an error.

The runtimes take turns run by run (and swap who goes first every run), so a burst of
noise on the machine lands on both rather than on one. Medians and 90th percentiles are
reported, not means: ``create`` is bimodal on cgroup v1 hosts (an RCU grace period on the
first write to ``cgroup.procs`` after an idle gap), and a mean would mix the two modes.

Stdlib only; run as root::

    python3 bench/lifecycle.py [--runs N] [--corral CMD] [--runc CMD] [--steps S] [--json]

The statistics and the table are pure functions at the top of the module, unit-tested
by tests/unit/test_bench_stats.py. See bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence

STEPS = ("run", "create", "start", "state", "kill", "delete")
LIFECYCLE_STEPS = STEPS[1:]
OCI_VERSION = "1.0.2"  # the newest version runc 1.1.5 claims; corral accepts any 1.x
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "true", "false", "sleep", "echo", "cat", "ls", "ps", "mount", "env", "id")
COMMAND_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


class BenchError(Exception):
    """A runtime command failed or the benchmark cannot run; the message says which."""


# ---------------------------------------------------------------- pure statistics


def median(values: Sequence[float]) -> float:
    """The middle value; the mean of the two middle ones for an even count."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile, interpolated linearly between the closest ranks.

    This is the "inclusive" definition (numpy's default, ``statistics.quantiles(...,
    method="inclusive")``): 0 is the minimum, 100 the maximum, 50 the median.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} is outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the divisor is 0."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def format_ratio(value: float | None) -> str:
    """``0.62x`` style; ``n/a`` when there is nothing to compare against."""
    return "n/a" if value is None else f"{value:.2f}x"


def format_ms(value: float | None) -> str:
    """Milliseconds with two decimals; ``-`` for a missing value."""
    return "-" if value is None else f"{value:.2f}"


def summarize(samples_s: Sequence[float]) -> dict[str, float | int]:
    """Median and p90 in milliseconds of a list of durations in seconds."""
    ms = [s * 1000 for s in samples_s]
    return {"runs": len(ms), "median_ms": median(ms), "p90_ms": percentile(ms, 90)}


def build_rows(
    results: Mapping[str, Mapping[str, Sequence[float]]],
    steps: Sequence[str],
    labels: Sequence[str],
) -> list[list[str]]:
    """One table row per step: medians per runtime, the ratio, then p90 per runtime.

    ``results[label][step]`` holds durations in seconds. The ratio is the first label's
    median over the second's (corral/runc); with a single runtime there is no ratio
    column. A step without samples for a runtime shows ``-``.
    """
    rows = []
    for step in steps:
        medians: list[float | None] = []
        p90s: list[float | None] = []
        for label in labels:
            samples = results.get(label, {}).get(step, [])
            summary = summarize(samples) if samples else None
            medians.append(None if summary is None else float(summary["median_ms"]))
            p90s.append(None if summary is None else float(summary["p90_ms"]))
        row = [step] + [format_ms(m) for m in medians]
        if len(labels) == 2:
            row.append(format_ratio(ratio(medians[0], medians[1])))
        row += [format_ms(p) for p in p90s]
        rows.append(row)
    return rows


def table_headers(labels: Sequence[str]) -> list[str]:
    """The column titles matching :func:`build_rows`."""
    headers = ["step"] + [f"{label} median ms" for label in labels]
    if len(labels) == 2:
        headers.append(f"{labels[0]}/{labels[1]}")
    return headers + [f"{label} p90 ms" for label in labels]


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, padded so it also reads well in a terminal.

    The first column is left-aligned (names), the others right-aligned (numbers).
    """
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {list(row)} has {len(row)} cells, expected {len(headers)}")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join("-" * (w + 1) + ":" if i else ":" + "-" * (w + 1) for i, w in enumerate(widths))
        + "|"
    )
    return "\n".join([line(headers), rule] + [line(r) for r in rows])


def parse_steps(text: str) -> tuple[str, ...]:
    """``"create,start"`` -> the steps in benchmark order; unknown names are an error."""
    wanted = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(wanted - set(STEPS))
    if unknown:
        raise ValueError(f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    if not wanted:
        raise ValueError("no steps chosen")
    return tuple(step for step in STEPS if step in wanted)


# ---------------------------------------------------------------- the bundle


def make_config(args: Sequence[str]) -> dict[str, object]:
    """A minimal Linux ``config.json`` that both corral and runc accept as is.

    Deliberately without ``linux.resources``, ``cgroupsPath``, ``seccomp``, ``hooks`` and
    a terminal: corral rejects what it does not implement yet, and runc must be given
    the very same config for the comparison to mean anything.
    """
    no_exec = ["nosuid", "noexec", "nodev"]
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": ["PATH=/bin", "TERM=dumb"],
            "cwd": "/",
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": no_exec},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": [*no_exec, "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": no_exec,
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": [*no_exec, "ro"],
            },
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts", "network")],
        },
    }


def make_bundle(directory: str, args: Sequence[str], busybox: str = BUSYBOX) -> str:
    """Create ``directory`` as a bundle running ``args`` in a busybox rootfs; return it."""
    rootfs = os.path.join(directory, "rootfs")
    bin_dir = os.path.join(rootfs, "bin")
    os.makedirs(bin_dir)
    for name in ("proc", "dev", "sys", "tmp"):
        os.mkdir(os.path.join(rootfs, name))
    shutil.copy2(busybox, os.path.join(bin_dir, "busybox"))
    for applet in APPLETS:
        os.symlink("busybox", os.path.join(bin_dir, applet))
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
        json.dump(make_config(args), f, indent=2)
    return directory


# ---------------------------------------------------------------- running the runtimes


class Runtime:
    """One runtime under test: its command, its private ``--root`` and live containers."""

    __slots__ = ("argv", "label", "live", "root")

    def __init__(self, label: str, argv: list[str], root: str) -> None:
        self.label = label
        self.argv = argv
        self.root = root
        self.live: set[str] = set()  # ids that may exist and must be force-deleted

    def command(self, *args: str) -> list[str]:
        # --root is a global flag: it goes before the subcommand, as runc wants it.
        return [*self.argv, "--root", self.root, *args]

    def call(self, scratch: str, *args: str, check: bool = True) -> tuple[float, str]:
        """Run one command; return (seconds, stdout). Raise BenchError if it fails."""
        argv = self.command(*args)
        # Output goes to files, not pipes: `create` hands its stdio to the container,
        # so a pipe would stay open until `sleep 1000` exits and communicate() would
        # wait for it. Files cost the same for both runtimes.
        out_path = os.path.join(scratch, "stdout")
        err_path = os.path.join(scratch, "stderr")
        with (
            open(out_path, "w+b") as out,
            open(err_path, "w+b") as err,
            open(os.devnull, "rb") as null,
        ):
            running: list[subprocess.Popen[bytes]] = []
            fired: list[bool] = []

            def on_timeout() -> None:
                fired.append(True)
                for p in running:
                    p.kill()

            # A watchdog thread rather than wait(timeout=...): with a timeout, Python
            # polls the child with sleeps that double from 0.5 ms, which would round every
            # duration up to 3.5, 7.5, 15.5, 31.5 ms. wait() blocks in waitpid(2) instead
            # and returns the moment the runtime exits. The thread starts before the clock.
            watchdog = threading.Timer(COMMAND_TIMEOUT_S, on_timeout)
            watchdog.start()
            try:
                start = time.perf_counter()
                try:
                    proc = subprocess.Popen(argv, stdin=null, stdout=out, stderr=err)
                except OSError as e:
                    raise BenchError(f"{shlex.join(argv)}: cannot execute: {e}") from e
                running.append(proc)
                if fired:
                    proc.kill()
                returncode = proc.wait()
                elapsed = time.perf_counter() - start
            finally:
                watchdog.cancel()
            if fired:
                raise BenchError(f"{shlex.join(argv)}: killed after {COMMAND_TIMEOUT_S} s")
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        if check and returncode != 0:
            raise BenchError(
                f"{shlex.join(argv)}: exit status {returncode}\n"
                f"stderr: {stderr.strip() or '(empty)'}\nstdout: {stdout.strip() or '(empty)'}"
            )
        return elapsed, stdout

    def status(self, scratch: str, container_id: str) -> str:
        _, stdout = self.call(scratch, "state", container_id)
        return self.parse_status(container_id, stdout)

    def parse_status(self, container_id: str, stdout: str) -> str:
        try:
            return str(json.loads(stdout)["status"])
        except (ValueError, KeyError, TypeError) as e:
            raise BenchError(f"{self.label} state {container_id}: bad output {stdout!r}") from e

    def wait_stopped(self, scratch: str, container_id: str) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while (status := self.status(scratch, container_id)) != "stopped":
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.label}: {container_id} still {status!r} {STOP_TIMEOUT_S} s after kill"
                )
            time.sleep(0.001)

    def cleanup(self, scratch: str) -> list[str]:
        """Force-delete every container that may still exist; return what went wrong."""
        problems = []
        for container_id in sorted(self.live):
            try:
                self.call(scratch, "delete", "--force", container_id)
            except (BenchError, OSError) as e:
                # A step that failed before the container existed leaves nothing to
                # delete; runc (and corral, which keeps its messages) says so.
                if "does not exist" not in str(e):
                    problems.append("; ".join(str(e).splitlines()[:2]))
                    continue
            self.live.discard(container_id)
        return problems


def time_run(rt: Runtime, scratch: str, bundle: str, container_id: str) -> dict[str, float]:
    """``run`` of /bin/true, attached; run removes the container when it exits."""
    rt.live.add(container_id)
    elapsed, _ = rt.call(scratch, "run", "--bundle", bundle, container_id)
    rt.live.discard(container_id)
    return {"run": elapsed}


def time_lifecycle(rt: Runtime, scratch: str, bundle: str, container_id: str) -> dict[str, float]:
    """create, start, state, kill KILL, (wait for stopped, untimed), delete."""
    times = {}
    rt.live.add(container_id)
    times["create"], _ = rt.call(scratch, "create", "--bundle", bundle, container_id)
    times["start"], _ = rt.call(scratch, "start", container_id)
    times["state"], stdout = rt.call(scratch, "state", container_id)
    if (status := rt.parse_status(container_id, stdout)) != "running":
        raise BenchError(f"{rt.label}: {container_id} is {status!r} after start, not running")
    times["kill"], _ = rt.call(scratch, "kill", container_id, "KILL")
    rt.wait_stopped(scratch, container_id)
    times["delete"], _ = rt.call(scratch, "delete", container_id)
    rt.live.discard(container_id)
    return times


def turn_order(runtimes: Sequence[Runtime], n: int) -> list[Runtime]:
    """The order of run ``n``: it alternates, so neither runtime always goes first."""
    return list(runtimes) if n % 2 == 0 else list(reversed(runtimes))


def benchmark(
    runtimes: Sequence[Runtime],
    workdir: str,
    runs: int,
    steps: Sequence[str],
    *,
    warmup: int,
    progress: bool,
) -> dict[str, dict[str, list[float]]]:
    """Run the rounds; return durations in seconds as ``results[label][step]``."""
    bundle_true = make_bundle(os.path.join(workdir, "bundle-true"), ["/bin/true"])
    bundle_sleep = make_bundle(os.path.join(workdir, "bundle-sleep"), ["/bin/sleep", "1000"])
    want_run = "run" in steps
    want_lifecycle = any(step in steps for step in LIFECYCLE_STEPS)
    results: dict[str, dict[str, list[float]]] = {
        rt.label: {s: [] for s in steps} for rt in runtimes
    }
    for n in range(warmup + runs):
        for rt in turn_order(runtimes, n):
            # The lifecycle runs whole even when only some of its steps are chosen: each
            # step needs the ones before it, and the container must be gone afterwards.
            times: dict[str, float] = {}
            if want_run:
                times |= time_run(rt, workdir, bundle_true, f"bench-{os.getpid()}-{n}-run")
            if want_lifecycle:
                times |= time_lifecycle(rt, workdir, bundle_sleep, f"bench-{os.getpid()}-{n}-lc")
            if n >= warmup:
                for step in steps:
                    results[rt.label][step].append(times[step])
        done = n + 1 - warmup
        if progress and done > 0 and (done % 10 == 0 or done == runs):
            print(f"  {done}/{runs} runs", file=sys.stderr)
    return results


def version_of(argv: Sequence[str]) -> str:
    """The first line of ``CMD --version``, or a note why there is none."""
    try:
        proc = subprocess.run(
            [*argv, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0] if proc.returncode == 0 and lines else "unknown"


def find_command(text: str) -> list[str] | None:
    """Split a command line like ``"python3 -m corral"``; None if its program is missing."""
    argv = shlex.split(text)
    if not argv or shutil.which(argv[0]) is None:
        return None
    return argv


def report_json(
    results: Mapping[str, Mapping[str, Sequence[float]]],
    runtimes: Sequence[Runtime],
    steps: Sequence[str],
    runs: int,
) -> dict[str, object]:
    """The machine-readable form: summaries, ratios and raw samples in milliseconds."""
    labels = [rt.label for rt in runtimes]
    per_step: dict[str, object] = {}
    for step in steps:
        entry: dict[str, object] = {}
        for label in labels:
            samples = results[label][step]
            summary = summarize(samples)
            entry[label] = {
                "runs": summary["runs"],
                "median_ms": round(summary["median_ms"], 3),
                "p90_ms": round(summary["p90_ms"], 3),
                "samples_ms": [round(s * 1000, 3) for s in samples],
            }
        if len(labels) == 2:
            medians = [median(results[label][step]) for label in labels]
            value = ratio(medians[0], medians[1])
            entry["ratio"] = None if value is None else round(value, 4)
        per_step[step] = entry
    return {
        "runs": runs,
        "runtimes": {
            rt.label: {"command": shlex.join(rt.argv), "version": version_of(rt.argv)}
            for rt in runtimes
        },
        "steps": per_step,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time corral against runc over run/create/start/state/kill/delete."
    )
    parser.add_argument("--runs", type=int, default=30, help="timed runs per runtime (30)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (1)")
    parser.add_argument("--corral", default="corral", help="corral's command line (corral)")
    parser.add_argument("--runc", default="runc", help="runc's command line (runc)")
    parser.add_argument(
        "--steps",
        default=",".join(STEPS),
        help=f"comma-separated steps to time (default: {','.join(STEPS)})",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON document instead")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    try:
        args.steps = parse_steps(args.steps)
    except ValueError as e:
        parser.error(str(e))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("lifecycle.py: must run as root (containers need namespaces)", file=sys.stderr)
        return 1
    if not os.access(BUSYBOX, os.X_OK):
        print(
            f"lifecycle.py: {BUSYBOX} is missing (apt-get install busybox-static)", file=sys.stderr
        )
        return 1
    corral_argv = find_command(args.corral)
    if corral_argv is None:
        print(f"lifecycle.py: corral command {args.corral!r} not found", file=sys.stderr)
        return 1
    runc_argv = find_command(args.runc)
    if runc_argv is None:
        print(f"lifecycle.py: runc {args.runc!r} not found; timing corral alone", file=sys.stderr)

    workdir = tempfile.mkdtemp(prefix="corral-bench-")
    runtimes = [Runtime("corral", corral_argv, os.path.join(workdir, "root-corral"))]
    if runc_argv is not None:
        runtimes.append(Runtime("runc", runc_argv, os.path.join(workdir, "root-runc")))
    for rt in runtimes:
        os.mkdir(rt.root, 0o700)
    status = 0
    try:
        if not args.json:
            print(
                f"{args.runs} runs (+{args.warmup} warm-up), runtimes interleaved: "
                + ", ".join(f"{rt.label} = {shlex.join(rt.argv)}" for rt in runtimes),
                file=sys.stderr,
            )
        results = benchmark(
            runtimes, workdir, args.runs, args.steps, warmup=args.warmup, progress=not args.json
        )
        if args.json:
            print(json.dumps(report_json(results, runtimes, args.steps, args.runs), indent=2))
        else:
            labels = [rt.label for rt in runtimes]
            rows = build_rows(results, args.steps, labels)
            print(render_table(table_headers(labels), rows))
    except BenchError as e:
        print(f"lifecycle.py: {e}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("lifecycle.py: interrupted; cleaning up", file=sys.stderr)
        status = 130
    finally:
        for rt in runtimes:
            for problem in rt.cleanup(workdir):
                print(f"lifecycle.py: cleanup ({rt.label}): {problem}", file=sys.stderr)
                status = status or 1
        shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
