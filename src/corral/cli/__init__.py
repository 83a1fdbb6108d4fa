"""The ``corral`` command line: runc's subcommands, flags, outputs and exit codes."""
