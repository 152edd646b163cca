"""junit.xml: one <testcase> per budget check (classname = device.artifact, name = metric)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any


def render_junit(report: dict[str, Any]) -> str:
    checks = report["checks"]
    failures = sum(1 for c in checks if not c["passed"])
    skipped = sum(1 for c in checks if c["verdict"] == "SKIPPED")
    suite = ET.Element("testsuite", name=f"edgeship.{report['model']}", tests=str(len(checks)),
                       failures=str(failures), errors="0", skipped=str(skipped), timestamp=report["created"])
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"{c['device']}.{c['artifact']}", name=c["metric"], time="0")
        msg = f"{c['verdict']}: {c['detail']}"
        if not c["passed"]:
            ET.SubElement(case, "failure", message=msg, type=c["verdict"]).text = msg
        elif c["verdict"] == "SKIPPED":
            ET.SubElement(case, "skipped", message=c["detail"])
        else:
            ET.SubElement(case, "system-out").text = msg
    root = ET.Element("testsuites", name="edgeship", tests=str(len(checks)), failures=str(failures))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
