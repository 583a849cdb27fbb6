"""Wires the streamproof pytest plugin into this suite (options, items, reports)."""

from streamproof.pytest_plugin import (  # noqa: F401  (pytest finds hooks by name)
    conformance,
    pytest_addoption,
    pytest_collection_finish,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_configure_node,
    pytest_generate_tests,
    pytest_report_header,
    pytest_sessionfinish,
    pytest_sessionstart,
    pytest_terminal_summary,
    pytest_testnodedown,
    pytest_unconfigure,
)
