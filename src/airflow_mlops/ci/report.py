"""What ``airflow-mlops ci`` found: one :class:`Check` per check and pipeline, printed as a summary and
written as JUnit XML, which CI systems (GitHub Actions, Jenkins, GitLab) display as test results."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # control characters XML 1.0 cannot hold


@dataclass(frozen=True)
class Check:
    suite: str  # what was checked: "specs", "dags", or a pipeline's name
    name: str
    ok: bool
    detail: str
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summary(checks: Iterable[Check], seconds: float) -> str:
    checks = list(checks)
    width = max((len(c.suite) for c in checks), default=0)
    lines = [
        f"{'PASS' if c.ok else 'FAIL'}  {c.suite:<{width}}  {c.name}: {c.detail}"
        + (f" ({c.seconds:.1f} s)" if c.seconds >= 0.1 else "")
        for c in checks
    ]
    failures = sum(not c.ok for c in checks)
    verdict = f"{failures} failed" if failures else "all passed"
    lines.append(f"{len(checks)} checks, {verdict} in {seconds:.0f} s")
    return "\n".join(lines)


def junit_xml(checks: Iterable[Check], path: Path) -> None:
    """One ``testsuite`` per suite, one ``testcase`` per check, a ``failure`` with the detail."""
    root = ET.Element("testsuites", name="airflow-mlops ci")
    suites: dict[str, ET.Element] = {}
    for check in checks:
        if check.suite not in suites:
            suites[check.suite] = ET.SubElement(root, "testsuite", name=check.suite, tests="0", failures="0", time="0")
        suite = suites[check.suite]
        suite.set("tests", str(int(suite.get("tests", "0")) + 1))
        suite.set("time", f"{float(suite.get('time', '0')) + check.seconds:.3f}")
        case = ET.SubElement(
            suite, "testcase", classname=f"airflow_mlops.ci.{check.suite}", name=check.name, time=f"{check.seconds:.3f}"
        )
        detail = NOT_XML.sub("?", check.detail)  # details quote data values and log lines
        if check.ok:
            ET.SubElement(case, "system-out").text = detail
        else:
            suite.set("failures", str(int(suite.get("failures", "0")) + 1))
            ET.SubElement(case, "failure", message=detail[:500]).text = detail
    for name in ("tests", "failures"):
        root.set(name, str(sum(int(s.get(name, "0")) for s in suites.values())))
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
