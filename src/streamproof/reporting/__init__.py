"""Report writers shared by the pytest plugin and the CLI.

``compliance.json`` is the one document every other format is rendered from:

- ``compliance.py``: the log the checks write into, and ``compliance.json`` (its schema is
  ``schemas/report/compliance.schema.json``)
- ``markdown.py``: ``compliance.md`` (a job summary or PR comment)
- ``html.py``: ``index.html`` (self-contained; the load charts come from ``charts.py``)
- ``junit.py``: readable names and rule properties in pytest's ``--junitxml`` file
- ``allure_results.py``: labels, links and attachments of Allure results (``--alluredir``)
- ``evidence.py``: rule source links, headers and the ``curl`` command shown with a finding
- ``load.py``: reading a load run's files
- ``diff.py``: ``streamproof diff``, what regressed between two reports
- ``config.py``: ``streamproof.toml`` / ``[tool.streamproof]``: select, ignore, waivers
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..redact import redact
from .compliance import write_json
from .html import render_html
from .load import LoadData
from .markdown import render_markdown

__all__ = ["REPORT_FILES", "write_reports"]

REPORT_FILES = {"json": "compliance.json", "markdown": "compliance.md", "html": "index.html"}


def write_reports(
    report_dir: Path, report: Mapping[str, Any], load: LoadData | None = None
) -> dict[str, Path]:
    """``compliance.json``, ``compliance.md`` and ``index.html`` into ``report_dir``."""
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: report_dir / name for kind, name in REPORT_FILES.items()}
    write_json(paths["json"], report)
    paths["markdown"].write_text(render_markdown(report), encoding="utf-8")
    paths["html"].write_text(redact(render_html(report, load)), encoding="utf-8")
    return paths
