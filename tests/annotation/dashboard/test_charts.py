"""Server-rendered SVG charts: well-formed, accessible, and safe with hostile labels."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from annotation.dashboard import charts

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & "quoted" \'single\''


def _parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))  # raises on anything that is not well-formed XML


def test_line_chart_is_accessible_and_drops_non_finite_points():
    svg = charts.line_chart(
        [charts.Series("accuracy", [(10, 0.6), (20, float("nan")), (30, 0.7), (40, math.inf)])],
        chart_id="chart-curve",
        title="Learning curve",
        x_label="judgments",
        y_label="accuracy",
        y_range=(0, 1),
        reference=(0.5, "chance"),
        summary="latest 70% after 30 judgments",
    )
    root = _parse(svg)
    assert root.get("role") == "img" and root.get("id") == "chart-curve"
    assert root.get("aria-label") == "Learning curve. latest 70% after 30 judgments"
    assert root.find(f"{SVG}title").text == root.get("aria-label")
    points = root.findall(f".//{SVG}circle")
    assert len(points) == 2  # NaN and inf are not drawn
    assert [p.find(f"{SVG}title").text for p in points] == ["accuracy: 0.6 at 10", "accuracy: 0.7 at 30"]
    assert "nan" not in str(svg).lower() and "inf" not in str(svg).lower()
    # y axis fixed at 0..1: the 0.6 point sits below the 0.7 point, both inside the frame.
    ys = [float(p.get("cy")) for p in points]
    assert charts.MARGIN_TOP < ys[1] < ys[0] < 220 - charts.MARGIN_BOTTOM


def test_hostile_labels_are_escaped_everywhere():
    markup = [
        charts.line_chart([charts.Series(HOSTILE, [(0, 1), (1, 2)])], chart_id="a", title=HOSTILE,
                          x_label=HOSTILE, y_label=HOSTILE, summary=HOSTILE),
        charts.bar_chart([HOSTILE, "b"], [1, 2], chart_id="b", title=HOSTILE, x_label=HOSTILE, y_label=HOSTILE),
        charts.interval_chart([charts.Interval(HOSTILE, 0.1, -0.2, 0.4, note=HOSTILE)], chart_id="c",
                              title=HOSTILE, x_label=HOSTILE),
    ]  # fmt: skip
    for svg in markup:
        root = _parse(svg)
        assert "<script" not in str(svg)
        assert root.findall(f".//{SVG}script") == [] and root.findall(".//script") == []
        texts = [t.text for t in root.iter(f"{SVG}text")] + [root.get("aria-label")]
        assert any(HOSTILE in (t or "") for t in texts)  # shown as text, not markup


def test_bar_chart_draws_one_bar_per_positive_value_and_checks_lengths():
    root = _parse(charts.bar_chart(["a", "b", "c", "d"], [3, 0, -1, float("nan")], chart_id="bars", title="t",
                                   x_label="x", y_label="y"))  # fmt: skip
    bars = root.findall(f".//{SVG}rect")
    assert [b.find(f"{SVG}title").text for b in bars] == ["a: 3"]
    with pytest.raises(ValueError, match="one value per label"):
        charts.bar_chart(["a"], [1, 2], chart_id="x", title="t", x_label="x", y_label="y")


def test_interval_chart_orders_rows_and_places_estimates_inside_intervals():
    rows = [charts.Interval("best", 1.0, 0.5, 1.5, "P(best) 90%"), charts.Interval("worst", -1.0, -1.6, -0.4)]
    root = _parse(charts.interval_chart(rows, chart_id="board", title="Leaderboard", x_label="score"))
    lines = root.findall(f".//{SVG}line[@class='chart-interval']")
    dots = root.findall(f".//{SVG}g[@class='chart-row']/{SVG}circle")
    assert len(lines) == len(dots) == 2
    for line, dot in zip(lines, dots, strict=True):
        assert float(line.get("x1")) < float(dot.get("cx")) < float(line.get("x2"))
    assert float(dots[0].get("cx")) > float(dots[1].get("cx"))
    labels = [g.find(f"{SVG}title").text for g in root.findall(f".//{SVG}g[@class='chart-row']")]
    assert labels[0] == "best: 1 (95% interval 0.5 to 1.5), P(best) 90%"


def test_empty_charts_say_so_and_bad_ids_are_refused():
    for svg in (
        charts.line_chart([charts.Series("s", [])], chart_id="e1", title="t", x_label="x", y_label="y"),
        charts.bar_chart([], [], chart_id="e2", title="t", x_label="x", y_label="y"),
        charts.interval_chart([charts.Interval("a", math.nan, 0, 1)], chart_id="e3", title="t", x_label="x"),
    ):
        root = _parse(svg)
        assert root.get("aria-label") == "t. No data yet." and "No data yet." in str(svg)
    assert _parse(charts.bar_chart(["a"], [1], chart_id='"><x', title="t", x_label="x", y_label="y")).get("id") == "x"
    with pytest.raises(ValueError, match="chart_id"):
        charts.bar_chart(["a"], [1], chart_id="<>", title="t", x_label="x", y_label="y")


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(0, 1, [0, 0.5, 1]), (0, 23, [0, 10, 20, 30]), (-3.4, 3.2, [-4, -2, 0, 2, 4]), (5, 5, [4.5, 5, 5.5]),
     (0.54, 0.74, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75])],
)  # fmt: skip
def test_nice_ticks_cover_the_range_with_round_steps(low, high, expected):
    assert charts.nice_ticks(low, high) == pytest.approx(expected)
