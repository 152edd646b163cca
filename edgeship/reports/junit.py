"""junit.xml: one <testcase> per budget check (classname = device.artifact, name = metric).

Valid against the JUnit schema Jenkins' xUnit plugin and GitLab read (tests/data/junit-10.xsd):
``<testsuites>`` carries ``tests failures errors time`` (that schema has no ``skipped`` there;
the count is on the ``<testsuite>``). A device-independent check (budget device ``*``) gets the
classname ``any-device.<artifact>``: CI views split classnames on dots and show them as
packages, where a literal ``*`` reads as a glob.

The gate judges evidence measured earlier, so a check takes no time of its own: ``time`` is 0.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from edgeship.reports.fmt import evidence_suffix, fails

ANY_DEVICE = "any-device"


def classname(c: dict[str, Any]) -> str:
    return f"{ANY_DEVICE if c['device'] == '*' else c['device']}.{c['artifact']}"


def render_junit(report: dict[str, Any]) -> str:
    checks = report["checks"]
    counts = {
        "tests": str(len(checks)),
        "failures": str(sum(1 for c in checks if fails(c))),
        "errors": "0",   # evidence that is missing or stale is a failed check, not an error of the tool
        "time": "0",
    }
    skipped = sum(1 for c in checks if c["verdict"] == "SKIPPED")
    suite = ET.Element("testsuite", name=f"edgeship.{report['model']}", **counts, skipped=str(skipped),
                       timestamp=report["created"])
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=classname(c), name=c["metric"], time="0")
        # a stale-evidence detail names the command to re-run; "PASS (simulated): ..." says how it was judged
        msg = f"{c['verdict']}{evidence_suffix(c)}: {c['detail']}"
        if fails(c):
            ET.SubElement(case, "failure", message=msg, type=c["verdict"]).text = msg
        elif c["verdict"] == "SKIPPED":
            ET.SubElement(case, "skipped", message=c["detail"])
        else:
            ET.SubElement(case, "system-out").text = msg
    root = ET.Element("testsuites", name="edgeship", **counts)
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
