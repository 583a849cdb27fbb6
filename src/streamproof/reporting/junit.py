"""Makes pytest's ``--junitxml`` file read well in any CI: one ``<testcase>`` per (rule,
scenario) named after the rule, grouped by API and scenario, with the rule's facts as
properties.

pytest writes ``classname="test_rules" name="test_rule[openai/plain/openai.done]"``; after it
has written the file this rewrites each case to ``classname="streamproof.openai.plain"``
``name="openai.done"`` (Jenkins shows package ``streamproof.openai``, class ``plain``) and
adds ``<properties>``: ``rule``, ``level``, ``group``, ``api``, ``scenario``, ``outcome``
(``pass``/``fail``/``warn``/``waived``/``skip``), ``title``, ``source`` and ``waiver``. A
SHOULD warning (a passed test case) carries its finding in ``<system-out>``; a waived rule is
pytest's xfail, i.e. ``<skipped type="pytest.xfail" message="waived: ...">``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..redact import redact

__all__ = ["JUnitCase", "polish_junit"]

_PARAM = re.compile(r"\[(.+)\]$")


@dataclass(frozen=True)
class JUnitCase:
    classname: str
    name: str
    properties: tuple[tuple[str, str], ...]
    system_out: str | None = None


def polish_junit(
    path: Path, cases: Mapping[str, JUnitCase], suite_name: str = "streamproof"
) -> int:
    """Rewrite the cases of ``path`` found in ``cases`` (keyed by pytest's parameter id);
    returns how many were rewritten. The file is left alone if it cannot be parsed."""
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError):
        return 0
    root = tree.getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for suite in suites:
        if suite.get("name") == "pytest":
            suite.set("name", suite_name)
    if root.tag == "testsuites" and root.get("name") == "pytest tests":
        root.set("name", suite_name)
    done = 0
    for testcase in root.iter("testcase"):
        match = _PARAM.search(testcase.get("name", ""))
        case = cases.get(match.group(1)) if match else None
        if case is None:
            continue
        testcase.set("classname", case.classname)
        testcase.set("name", case.name)
        old = testcase.find("properties")
        if old is not None:
            testcase.remove(old)
        props = ET.Element("properties")
        for key, value in case.properties:
            ET.SubElement(props, "property", name=key, value=redact(value))
        testcase.insert(0, props)
        if case.system_out:
            out = testcase.find("system-out")
            if out is None:
                out = ET.SubElement(testcase, "system-out")
            out.text = redact(case.system_out) + ("\n" + out.text if out.text else "")
        done += 1
    ET.indent(root)
    text = ET.tostring(root, encoding="unicode")
    path.write_text('<?xml version="1.0" encoding="utf-8"?>' + redact(text), encoding="utf-8")
    return done
