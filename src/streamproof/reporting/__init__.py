"""Report writers shared by the pytest plugin and the CLI."""
