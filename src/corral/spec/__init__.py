"""The OCI runtime configuration (``config.json``): parsing, validation, defaults."""
