"""Run corral's tests inside a small qemu VM whose kernel mounts only cgroup v2.

The host this project is built on mounts cgroup v1 controllers, so cgroup v2 code can only
be proven on another kernel. ``run.py`` boots Debian's stock kernel (downloaded with
``apt-get download``, never installed) under qemu with a busybox initramfs, shares the
host's ``/usr`` read-only and the checkout read-write over 9p at the same absolute path (so
the checkout's ``.venv`` works unchanged), runs pytest in the guest and exits with its
status. See docs/vm-testing.md.

Modules: ``cache`` (the artifact cache and its input stamps), ``kernel`` (fetch and unpack
the kernel package), ``modinfo`` (module dependencies from each ``.ko``'s ``.modinfo``),
``vmlinux`` (the ELF kernel inside a bzImage, for a PVH boot), ``cpio`` (a newc archive
writer), ``initramfs`` (the guest's boot image), ``qemu`` (the VM run with its timeout and
exit-code plumbing) and ``run`` (the command line).
"""
