"""Render an `Analysis` as JUnit XML, one test case per criterion, for CI systems.

A FAIL is a `<failure>` whose type is `critical`, `insufficient-evidence`
or `criterion`. PASS and MARGINAL pass, and a MARGINAL case is marked as such in its
`<system-out>`. The verdict is a property of the test suite.
"""

from __future__ import annotations

from xml.etree import ElementTree

from compare.analysis import Analysis
from compare.json_report import iso_utc
from compare.render import _figure, _threshold
from compare.verdict import CriterionResult, Status

__all__ = ["render_junit"]


def render_junit(analysis: Analysis) -> str:
    """Return the criteria as a JUnit XML document."""
    results = analysis.criteria_results
    failures = sum(1 for result in results if result.status == Status.FAIL)
    suites = ElementTree.Element("testsuites", name="cutover readiness",
                                 tests=str(len(results)), failures=str(failures))
    suite = ElementTree.SubElement(
        suites, "testsuite", name=f"cutover readiness {analysis.run_id}",
        tests=str(len(results)), failures=str(failures), errors="0", skipped="0",
        timestamp=str(iso_utc(analysis.started_at)),
    )
    properties = ElementTree.SubElement(suite, "properties")
    for name, value in (("verdict", str(analysis.verdict)), ("exit_code", str(analysis.exit_code)),
                        ("run_id", analysis.run_id), ("compared_orders", str(analysis.compared_orders))):
        ElementTree.SubElement(properties, "property", name=name, value=value)

    for result in results:
        suite.append(_test_case(analysis.run_id, result))
    ElementTree.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(suites, encoding="unicode") + "\n"


def _test_case(run_id: str, result: CriterionResult) -> ElementTree.Element:
    case = ElementTree.Element("testcase", classname=f"cutover.{run_id}", name=result.name)
    summary = (f"{result.description}: {_figure(result)} (required {_threshold(result)})")
    examples = ", ".join(result.examples)
    if result.status == Status.FAIL:
        kind = ("critical" if result.critical
                else "insufficient-evidence" if result.evidence else "criterion")
        failure = ElementTree.SubElement(case, "failure", message=summary, type=kind)
        failure.text = f"Example orders: {examples}" if examples else "No example orders."
    out = ElementTree.SubElement(case, "system-out")
    out.text = f"{result.status}: {summary}" + (f". Example orders: {examples}" if examples else "")
    return case
