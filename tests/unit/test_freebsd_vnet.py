"""vnet interfaces and interface aliases: the ifconfig(8) commands, their order, the
rollback of a half-done attach and a detach that goes on past failures."""

from __future__ import annotations

import sys

import pytest

from corral.errors import ConfigError, CreateError
from corral.freebsd.vnet import (
    IFCONFIG,
    attach_network,
    check_network,
    detach_network,
    network_steps,
    run_command,
)
from corral.spec.freebsd import Jail
from corral.spec.model import parse_config


class Recorder:
    """Records argv; fails (CreateError, as run_command would) on a matching command."""

    def __init__(self, fail: list[list[str]] | None = None) -> None:
        self.argvs: list[list[str]] = []
        self.fail = fail or []

    def __call__(self, argv: list[str]) -> None:
        self.argvs.append(argv)
        if argv in self.fail:
            raise CreateError(f"{' '.join(argv)}: ifconfig: interface {argv[1]} does not exist")


def test_steps_for_aliases_and_vnet_interfaces() -> None:
    steps = network_steps(
        "c1",
        vnet_interfaces=["epair0b", "tap1"],
        interface="lo1",
        ip4_addr=["10.0.0.2", "10.0.0.3"],
        ip6_addr=["fd00::2"],
    )
    assert steps == [
        (
            [IFCONFIG, "lo1", "inet", "10.0.0.2/32", "alias"],
            [IFCONFIG, "lo1", "inet", "10.0.0.2", "-alias"],
        ),
        (
            [IFCONFIG, "lo1", "inet", "10.0.0.3/32", "alias"],
            [IFCONFIG, "lo1", "inet", "10.0.0.3", "-alias"],
        ),
        (
            [IFCONFIG, "lo1", "inet6", "fd00::2/128", "alias"],
            [IFCONFIG, "lo1", "inet6", "fd00::2", "-alias"],
        ),
        ([IFCONFIG, "epair0b", "vnet", "c1"], [IFCONFIG, "epair0b", "-vnet", "c1"]),
        ([IFCONFIG, "tap1", "vnet", "c1"], [IFCONFIG, "tap1", "-vnet", "c1"]),
    ]
    assert IFCONFIG == "/sbin/ifconfig"


def test_addresses_without_an_interface_need_no_commands() -> None:
    # Without "interface" the addresses are only jail parameters (ip4.addr).
    assert network_steps("c1", ip4_addr=["10.0.0.2"], ip6_addr=["fd00::2"]) == []
    assert network_steps("c1") == []


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"vnet_interfaces": ["em0", "-a"]}, "freebsd.jail.vnetInterfaces[1]"),
        ({"interface": "-a", "ip4_addr": ["10.0.0.1"]}, "freebsd.jail.interface"),
        ({"interface": "lo1", "ip4_addr": ["-x"]}, "freebsd.jail.ip4Addr[0]"),
        ({"interface": "lo1", "ip6_addr": ["::1", ""]}, "freebsd.jail.ip6Addr[1]"),
    ],
)
def test_arguments_ifconfig_would_misread(kwargs: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        network_steps("c1", **kwargs)  # type: ignore[arg-type]
    assert caught.value.path == path


def test_check_network_reads_the_parsed_jail() -> None:
    spec = parse_config(
        {"ociVersion": "1.3.0", "freebsd": {"jail": {"vnet": "new", "vnetInterfaces": ["-x"]}}}
    )
    with pytest.raises(ConfigError) as caught:
        check_network(spec)
    assert caught.value.path == "freebsd.jail.vnetInterfaces[0]"
    check_network(parse_config({"ociVersion": "1.3.0"}))
    check_network(parse_config({"ociVersion": "1.3.0", "freebsd": {"devices": []}}))


def jail() -> Jail:
    return Jail(
        vnet="new",
        vnet_interfaces=["epair0b", "epair1b"],
        interface="lo1",
        ip4_addr=["10.0.0.2"],
    )


def test_attach_runs_in_order_and_returns_the_undo_last_first() -> None:
    run = Recorder()
    undo = attach_network(run, "c1", jail())
    assert run.argvs == [
        [IFCONFIG, "lo1", "inet", "10.0.0.2/32", "alias"],
        [IFCONFIG, "epair0b", "vnet", "c1"],
        [IFCONFIG, "epair1b", "vnet", "c1"],
    ]
    assert undo == [
        [IFCONFIG, "epair1b", "-vnet", "c1"],
        [IFCONFIG, "epair0b", "-vnet", "c1"],
        [IFCONFIG, "lo1", "inet", "10.0.0.2", "-alias"],
    ]


def test_attach_failure_half_way_undoes_what_was_done() -> None:
    run = Recorder(fail=[[IFCONFIG, "epair1b", "vnet", "c1"]])
    with pytest.raises(CreateError) as caught:
        attach_network(run, "c1", jail())
    assert str(caught.value).startswith("network: /sbin/ifconfig epair1b vnet c1: ifconfig:")
    assert run.argvs == [
        [IFCONFIG, "lo1", "inet", "10.0.0.2/32", "alias"],
        [IFCONFIG, "epair0b", "vnet", "c1"],
        [IFCONFIG, "epair1b", "vnet", "c1"],
        [IFCONFIG, "epair0b", "-vnet", "c1"],
        [IFCONFIG, "lo1", "inet", "10.0.0.2", "-alias"],
    ]


def test_attach_failure_reports_a_failing_undo_too() -> None:
    run = Recorder(
        fail=[[IFCONFIG, "epair0b", "vnet", "c1"], [IFCONFIG, "lo1", "inet", "10.0.0.2", "-alias"]]
    )
    with pytest.raises(CreateError) as caught:
        attach_network(run, "c1", jail())
    assert "; undoing: jail c1: /sbin/ifconfig lo1 inet 10.0.0.2 -alias" in str(caught.value)


def test_attach_failure_on_the_first_command_runs_nothing_else() -> None:
    run = Recorder(fail=[[IFCONFIG, "lo1", "inet", "10.0.0.2/32", "alias"]])
    with pytest.raises(CreateError):
        attach_network(run, "c1", jail())
    assert len(run.argvs) == 1


def test_attach_with_nothing_to_do() -> None:
    run = Recorder()
    assert attach_network(run, "c1", Jail(ip4="inherit")) == []
    assert run.argvs == []


def test_detach_runs_every_undo_and_collects_errors() -> None:
    undo = [
        [IFCONFIG, "epair1b", "-vnet", "c1"],
        [IFCONFIG, "epair0b", "-vnet", "c1"],
        [IFCONFIG, "lo1", "inet", "10.0.0.2", "-alias"],
    ]
    run = Recorder(fail=[undo[0], undo[2]])
    errors = detach_network(run, "c1", undo)
    assert run.argvs == undo
    assert len(errors) == 2
    assert errors[0].startswith("jail c1: /sbin/ifconfig epair1b -vnet c1: ")
    assert "lo1 inet 10.0.0.2 -alias" in errors[1]


def test_detach_takes_the_json_form_of_the_undo_list() -> None:
    import json

    undo = json.loads(json.dumps(attach_network(Recorder(), "c1", jail())))
    run = Recorder()
    assert detach_network(run, "c1", undo) == []
    assert run.argvs[0] == [IFCONFIG, "epair1b", "-vnet", "c1"]


# -- the default runner ----------------------------------------------------------------


def test_run_command_success() -> None:
    run_command([sys.executable, "-c", "print('ignored')"])


def test_run_command_failure_carries_stderr() -> None:
    with pytest.raises(CreateError) as caught:
        run_command(
            [
                sys.executable,
                "-c",
                "import sys; sys.stderr.write('ifconfig: bad\\nmore\\n'); sys.exit(1)",
            ]
        )
    assert str(caught.value).endswith(": ifconfig: bad; more")


def test_run_command_failure_without_stderr_gives_the_status() -> None:
    with pytest.raises(CreateError) as caught:
        run_command([sys.executable, "-c", "raise SystemExit(3)"])
    assert str(caught.value).endswith(": exit status 3")


def test_run_command_missing_program() -> None:
    with pytest.raises(CreateError) as caught:
        run_command(["/nonexistent/ifconfig", "lo0"])
    assert str(caught.value).startswith("/nonexistent/ifconfig: ")
