"""The Linux backend: namespaces, mounts, pivot_root, capabilities, rlimits."""
