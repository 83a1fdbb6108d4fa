"""The FreeBSD backend: OCI containers as jails.

Everything here imports and unit-tests on Linux: the pure parts (jail parameters from
the config, iovec encoding, kinfo_proc decoding) take no system calls, and the parts
that do take a syscalls object (:class:`corral.freebsd.syscalls.FreeBSDSyscalls`, or a
recording fake in the tests).
"""
