"""The pure parts of bench/lifecycle.py: statistics, table rendering, the bundle config.

The benchmark is a standalone script, not a package module, so it is loaded by path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "lifecycle.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_lifecycle", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


lifecycle = load_script()


def test_median_odd_and_even_counts_ignore_order() -> None:
    assert lifecycle.median([5.0, 1.0, 3.0]) == 3.0
    assert lifecycle.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert lifecycle.median([7.0]) == 7.0


def test_median_is_robust_to_one_outlier() -> None:
    # The reason the benchmark reports medians: one RCU stall must not move the figure.
    assert lifecycle.median([3.0, 3.1, 2.9, 3.0, 250.0]) == 3.0


def test_median_and_percentile_of_nothing_raise() -> None:
    with pytest.raises(ValueError):
        lifecycle.median([])
    with pytest.raises(ValueError):
        lifecycle.percentile([], 90)


def test_percentile_endpoints_and_interpolation() -> None:
    values = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert lifecycle.percentile(values, 0) == 10.0
    assert lifecycle.percentile(values, 100) == 50.0
    assert lifecycle.percentile(values, 50) == 30.0
    # rank (5 - 1) * 0.9 = 3.6: 40 + 0.6 * (50 - 40)
    assert lifecycle.percentile(values, 90) == pytest.approx(46.0)
    assert lifecycle.percentile([2.0, 1.0], 25) == pytest.approx(1.25)


def test_percentile_matches_statistics_inclusive_quantiles() -> None:
    values = [float(v) for v in (12, 3, 7, 45, 9, 21, 16, 2, 30, 8, 11)]
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    for i, expected in enumerate(deciles, start=1):
        assert lifecycle.percentile(values, i * 10) == pytest.approx(expected)


def test_percentile_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.100"):
        lifecycle.percentile([1.0], 101)
    with pytest.raises(ValueError, match=r"outside 0\.\.100"):
        lifecycle.percentile([1.0], -1)


def test_ratio_and_its_formatting() -> None:
    assert lifecycle.ratio(6.0, 10.0) == pytest.approx(0.6)
    assert lifecycle.ratio(1.0, 0.0) is None
    assert lifecycle.ratio(None, 2.0) is None
    assert lifecycle.ratio(2.0, None) is None
    assert lifecycle.format_ratio(0.6234) == "0.62x"
    assert lifecycle.format_ratio(1.7) == "1.70x"
    assert lifecycle.format_ratio(None) == "n/a"


def test_format_ms() -> None:
    assert lifecycle.format_ms(3.14159) == "3.14"
    assert lifecycle.format_ms(None) == "-"


def test_summarize_converts_seconds_to_milliseconds() -> None:
    summary = lifecycle.summarize([0.001, 0.003, 0.002])
    assert summary["runs"] == 3
    assert summary["median_ms"] == pytest.approx(2.0)
    assert summary["p90_ms"] == pytest.approx(2.8)


def test_build_rows_two_runtimes_has_ratio_of_first_over_second() -> None:
    results = {
        "corral": {"run": [0.010, 0.012, 0.011], "state": [0.006]},
        "runc": {"run": [0.020, 0.022, 0.021], "state": [0.004]},
    }
    rows = lifecycle.build_rows(results, ["run", "state"], ["corral", "runc"])
    assert rows == [
        ["run", "11.00", "21.00", "0.52x", "11.80", "21.80"],
        ["state", "6.00", "4.00", "1.50x", "6.00", "4.00"],
    ]
    headers = lifecycle.table_headers(["corral", "runc"])
    assert headers == [
        "step",
        "corral median ms",
        "runc median ms",
        "corral/runc",
        "corral p90 ms",
        "runc p90 ms",
    ]
    assert all(len(row) == len(headers) for row in rows)


def test_build_rows_single_runtime_has_no_ratio_and_dashes_for_missing() -> None:
    rows = lifecycle.build_rows({"corral": {"run": [0.005]}}, ["run", "kill"], ["corral"])
    assert rows == [["run", "5.00", "5.00"], ["kill", "-", "-"]]
    assert lifecycle.table_headers(["corral"]) == ["step", "corral median ms", "corral p90 ms"]


def test_render_table_aligns_columns() -> None:
    text = lifecycle.render_table(["step", "ms"], [["run", "22.10"], ["create", "3.00"]])
    assert text.splitlines() == [
        "| step   |    ms |",
        "|:-------|------:|",
        "| run    | 22.10 |",
        "| create |  3.00 |",
    ]


def test_render_table_rejects_ragged_rows() -> None:
    with pytest.raises(ValueError, match="expected 2"):
        lifecycle.render_table(["a", "b"], [["only one"]])


def test_parse_steps_keeps_benchmark_order_and_rejects_unknown() -> None:
    assert lifecycle.parse_steps("delete, create,run") == ("run", "create", "delete")
    assert lifecycle.parse_steps(",".join(lifecycle.STEPS)) == lifecycle.STEPS
    with pytest.raises(ValueError, match="unknown step"):
        lifecycle.parse_steps("create,exec")
    with pytest.raises(ValueError, match="no steps"):
        lifecycle.parse_steps(" , ")


def test_turn_order_alternates() -> None:
    assert lifecycle.turn_order(["a", "b"], 0) == ["a", "b"]
    assert lifecycle.turn_order(["a", "b"], 1) == ["b", "a"]
    assert lifecycle.turn_order(["a"], 1) == ["a"]


def test_config_has_only_what_both_runtimes_accept() -> None:
    config = lifecycle.make_config(["/bin/sleep", "1000"])
    assert config["process"]["args"] == ["/bin/sleep", "1000"]
    assert config["process"]["terminal"] is False
    assert "hooks" not in config
    linux = config["linux"]
    assert not {"resources", "cgroupsPath", "seccomp"} & set(linux)
    assert sorted(ns["type"] for ns in linux["namespaces"]) == [
        "ipc",
        "mount",
        "network",
        "pid",
        "uts",
    ]
    by_destination = {m["destination"]: m for m in config["mounts"]}
    assert list(by_destination) == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"]
    assert by_destination["/dev"]["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert "ro" in by_destination["/sys"]["options"]
    json.dumps(config)  # serialisable as is


def test_make_bundle_lays_out_rootfs_and_config(tmp_path: Path) -> None:
    fake_busybox = tmp_path / "busybox"
    fake_busybox.write_bytes(b"\x7fELF not really")
    fake_busybox.chmod(0o755)
    bundle = lifecycle.make_bundle(str(tmp_path / "b"), ["/bin/true"], busybox=str(fake_busybox))
    rootfs = Path(bundle) / "rootfs"
    assert (rootfs / "bin" / "busybox").read_bytes() == b"\x7fELF not really"
    assert os.readlink(rootfs / "bin" / "true") == "busybox"
    assert os.readlink(rootfs / "bin" / "sleep") == "busybox"
    assert (rootfs / "proc").is_dir()
    config = json.loads((Path(bundle) / "config.json").read_text())
    assert config["process"]["args"] == ["/bin/true"]
    assert config["root"]["path"] == "rootfs"


def fake_runtime(tmp_path: Path, script: str) -> Any:
    """A Runtime whose command is a shell script; the runtime's arguments land in "$@"."""
    return lifecycle.Runtime("fake", ["sh", "-c", script, "fake"], str(tmp_path / "root"))


def test_call_returns_stdout_and_passes_root_before_the_subcommand(tmp_path: Path) -> None:
    rt = fake_runtime(tmp_path, 'echo "$@"')
    elapsed, stdout = rt.call(str(tmp_path), "state", "c1")
    assert stdout == f"--root {tmp_path / 'root'} state c1\n"
    assert 0 < elapsed < 10


def test_call_failure_names_the_command_and_shows_stderr(tmp_path: Path) -> None:
    rt = fake_runtime(tmp_path, "echo 'container does not exist' >&2; exit 3")
    with pytest.raises(lifecycle.BenchError) as info:
        rt.call(str(tmp_path), "delete", "c1")
    message = str(info.value)
    assert "delete c1: exit status 3" in message
    assert "stderr: container does not exist" in message


def test_call_kills_a_hung_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle, "COMMAND_TIMEOUT_S", 0.2)
    rt = fake_runtime(tmp_path, "exec sleep 30")
    with pytest.raises(lifecycle.BenchError, match=r"killed after 0\.2 s"):
        rt.call(str(tmp_path), "start", "c1")


def test_cleanup_force_deletes_live_containers_and_tolerates_missing_ones(tmp_path: Path) -> None:
    log = tmp_path / "log"
    script = f'echo "$@" >> {log}; case "$5" in gone) echo "does not exist" >&2; exit 1;; esac'
    rt = fake_runtime(tmp_path, script)
    rt.live.update({"a", "gone"})
    assert rt.cleanup(str(tmp_path)) == []
    assert rt.live == set()
    assert sorted(log.read_text().split("\n")[:-1]) == [
        f"--root {tmp_path / 'root'} delete --force a",
        f"--root {tmp_path / 'root'} delete --force gone",
    ]


def test_cleanup_reports_other_failures_and_keeps_the_id(tmp_path: Path) -> None:
    rt = fake_runtime(tmp_path, "echo 'device busy' >&2; exit 1")
    rt.live.add("stuck")
    problems = rt.cleanup(str(tmp_path))
    assert len(problems) == 1
    assert "delete --force stuck: exit status 1" in problems[0]
    assert "device busy" in problems[0]
    assert rt.live == {"stuck"}
