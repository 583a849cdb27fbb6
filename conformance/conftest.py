"""Wires the streamproof pytest plugin into this suite (options, items, reports)."""

from streamproof.pytest_plugin import (  # noqa: F401  (pytest finds hooks by name)
    conformance,
    pytest_addoption,
    pytest_configure,
    pytest_generate_tests,
    pytest_report_header,
    pytest_sessionfinish,
    pytest_terminal_summary,
)
