"""The SVG chart: well-formed, self-contained, one line per series."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from loadtest.chart import render_svg

SVG = "{http://www.w3.org/2000/svg}"


def test_chart_is_well_formed_svg_with_every_series():
    series = {"target_rate": [5, 5, 50, 50], "sent_rate": [5, 4, 48, 50],
              "legacy_open_gaps": [5, 4, 48, 50], "candidate_open_gaps": [0, 0, 0, 0]}

    root = ET.fromstring(render_svg(series, step_s=1.0, title="run <1> & co",
                                    phases=[("baseline", 0, 2), ("peak", 2, 4)]))

    assert root.tag == f"{SVG}svg"
    assert len(root.findall(f"{SVG}polyline")) == 4
    texts = [element.text for element in root.iter(f"{SVG}text")]
    assert "run <1> & co" in texts
    assert "baseline" in texts
    assert "peak" in texts


def test_chart_has_no_external_reference():
    svg = render_svg({"sent_rate": [1, 2, 3]}, step_s=1.0, title="t")

    assert "href" not in svg
    assert "<script" not in svg


def test_chart_skips_missing_series_and_handles_empty():
    root = ET.fromstring(render_svg({"sent_rate": []}, step_s=1.0, title="empty"))

    assert root.findall(f"{SVG}polyline") == []
