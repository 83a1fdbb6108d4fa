"""The jail's network set-up done from the host with ifconfig(8), as jail(8) does it.

Two ``freebsd.jail`` fields are not jail parameters (the kernel answers "unknown
parameter"); jail(8) implements them in user space and so does corral:

- ``vnetInterfaces`` (jail(8)'s ``vnet.interface``): each interface is moved into the
  jail's own network stack at ``create`` with ``ifconfig <if> vnet <jail>`` and taken
  back at ``delete`` with ``ifconfig <if> -vnet <jail>``. That must happen before the
  jail is removed: once its vnet is gone, the kernel returns the interfaces to the host
  by itself, and ``-vnet`` fails for want of a jail.
- ``interface``: every address of ``ip4Addr`` is added to that host interface as an
  alias (``ifconfig <if> inet <addr>/32 alias``), every ``ip6Addr`` one too
  (``inet6 <addr>/128 alias``), and removed at ``delete`` (``-alias``). A host
  prefix length, so that the alias adds no route beside the interface's own network.

:func:`network_steps` is the pure part: each change as a pair of argument vectors, the
one that makes it and the one that undoes it. :func:`attach_network` runs the first
ones and returns the undo vectors (a JSON list the backend keeps in the state record);
if one fails it runs the undo vectors of those done, last first, and raises.
:func:`detach_network` runs undo vectors at ``delete`` and goes on past failures.

Commands go through an injectable ``run(argv)``; the default, :func:`run_command`, runs
the program and turns a failure into :class:`CreateError` carrying its stderr. Tests
pass a recorder.
"""

from __future__ import annotations

from corral.errors import ConfigError, CreateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Protocol

    from corral.spec.model import Spec

    class JailNetwork(Protocol):
        """What is read from ``freebsd.jail`` (:class:`corral.spec.freebsd.Jail`)."""

        @property
        def vnet_interfaces(self) -> Sequence[str]: ...

        @property
        def interface(self) -> str | None: ...

        @property
        def ip4_addr(self) -> Sequence[str]: ...

        @property
        def ip6_addr(self) -> Sequence[str]: ...


IFCONFIG = "/sbin/ifconfig"  # _PATH_IFCONFIG, <paths.h>

Command = list[str]


def network_steps(
    jail_name: str,
    *,
    vnet_interfaces: Sequence[str] = (),
    interface: str | None = None,
    ip4_addr: Sequence[str] = (),
    ip6_addr: Sequence[str] = (),
) -> list[tuple[Command, Command]]:
    """(do, undo) commands for the network of jail ``jail_name``, in the order to do them.

    Raises :class:`ConfigError` for a name ifconfig(8) would read as an option.
    """
    _check_argument(jail_name, "jail name")
    steps: list[tuple[Command, Command]] = []
    if interface:
        _check_argument(interface, "freebsd.jail.interface")
        for index, address in enumerate(ip4_addr):
            _check_argument(address, f"freebsd.jail.ip4Addr[{index}]")
            steps.append(
                (
                    [IFCONFIG, interface, "inet", f"{address}/32", "alias"],
                    [IFCONFIG, interface, "inet", address, "-alias"],
                )
            )
        for index, address in enumerate(ip6_addr):
            _check_argument(address, f"freebsd.jail.ip6Addr[{index}]")
            steps.append(
                (
                    [IFCONFIG, interface, "inet6", f"{address}/128", "alias"],
                    [IFCONFIG, interface, "inet6", address, "-alias"],
                )
            )
    for index, name in enumerate(vnet_interfaces):
        _check_argument(name, f"freebsd.jail.vnetInterfaces[{index}]")
        steps.append(([IFCONFIG, name, "vnet", jail_name], [IFCONFIG, name, "-vnet", jail_name]))
    return steps


def check_network(spec: Spec) -> None:
    """Reject, before anything is created, what :func:`network_steps` would."""
    jail = spec.freebsd.jail if spec.freebsd is not None else None
    if jail is not None:
        network_steps(
            "check",
            vnet_interfaces=jail.vnet_interfaces,
            interface=jail.interface,
            ip4_addr=jail.ip4_addr,
            ip6_addr=jail.ip6_addr,
        )


def _check_argument(value: str, where: str) -> None:
    # ifconfig(8) takes a first argument starting with "-" as an option ("-a" lists every
    # interface); an empty one or one with a NUL cannot be passed at all.
    if not value or value.startswith("-") or "\0" in value:
        raise ConfigError(where, f'"{value}" cannot be passed to ifconfig(8)')


def attach_network(
    run: Callable[[list[str]], None], jail_name: str, jail: JailNetwork
) -> list[Command]:
    """Move ``jail.vnet_interfaces`` into the jail and add the ``interface`` aliases.

    Returns the commands that undo it, in the order to run them (for
    :func:`detach_network`). On a failure, undoes what was done and raises
    :class:`CreateError`.
    """
    steps = network_steps(
        jail_name,
        vnet_interfaces=jail.vnet_interfaces,
        interface=jail.interface,
        ip4_addr=jail.ip4_addr,
        ip6_addr=jail.ip6_addr,
    )
    undo: list[Command] = []
    for do, undo_one in steps:
        try:
            run(do)
        except (CreateError, OSError) as error:
            message = f"network: {_message(error)}"
            leftovers = detach_network(run, jail_name, undo)
            if leftovers:
                message += "; undoing: " + "; ".join(leftovers)
            raise CreateError(message) from None
        undo.insert(0, undo_one)
    return undo


def detach_network(
    run: Callable[[list[str]], None], jail_name: str, undo: Sequence[Sequence[str]]
) -> list[str]:
    """Run the ``undo`` commands :func:`attach_network` returned; return what failed.

    Every command is tried. ``jail_name`` is for the messages only.
    """
    errors: list[str] = []
    for argv in undo:
        try:
            run(list(argv))
        except (CreateError, OSError) as error:
            errors.append(f"jail {jail_name}: {_message(error)}")
    return errors


def run_command(argv: list[str]) -> None:
    """Run ``argv`` (stdin and stdout to /dev/null); raise CreateError with its stderr."""
    import subprocess

    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
    except OSError as error:
        raise CreateError(f"{argv[0]}: {error.strerror or error}") from None
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = "; ".join(line.strip() for line in lines if line.strip())
        status = (
            f"killed by signal {-done.returncode}"
            if done.returncode < 0
            else f"exit status {done.returncode}"
        )
        raise CreateError(f"{' '.join(argv)}: {reason or status}")


def _message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)
