"""Charts for the console, drawn on the server as SVG by pygal (no JavaScript reaches the browser:
the SVG is shown through <img>, where scripts never run, its response forbids scripts, and the
configuration script pygal always embeds is taken out)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

import pygal
from pygal.style import Style

_STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#1f2328",
    foreground_strong="#1f2328",
    foreground_subtle="#5c6470",
    colors=("#1565c0", "#b3261e", "#6d4c41", "#2e7d32"),
    font_family="Helvetica, Arial, sans-serif",
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
    title_font_size=14,
)


_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL | re.IGNORECASE)


def _without_scripts(svg: str) -> str:
    return _SCRIPT.sub("", svg)


def _labels(days: Sequence[date]) -> list[str]:
    # one label a week keeps 90 days readable
    return [d.isoformat() if i % 7 == 0 else "" for i, d in enumerate(days)]


def line_chart(title: str, days: Sequence[date], series: Sequence[tuple[str, Sequence[int]]]) -> str:
    chart = pygal.Line(
        style=_STYLE,
        width=760,
        height=300,
        title=None,  # the page's heading names the chart; pygal's would say it twice
        show_dots=False,
        x_label_rotation=30,
        show_minor_x_labels=False,
        legend_at_bottom=True,
        js=[],
        disable_xml_declaration=True,
        include_x_axis=True,
        no_data_text="—",
    )
    chart.x_labels = _labels(days)
    chart.x_labels_major = [label for label in chart.x_labels if label]
    for name, values in series:
        chart.add(name, list(values))
    svg: str = chart.render(is_unicode=True)
    return _without_scripts(svg)


def bar_chart(title: str, labels: Sequence[str], values: Sequence[int]) -> str:
    chart = pygal.HorizontalBar(
        style=_STYLE, width=760, height=max(160, 28 * len(labels) + 80), title=title, js=[],
        disable_xml_declaration=True, show_legend=False, no_data_text="—",
    )
    chart.x_labels = list(labels)
    chart.add(title, list(values))
    svg: str = chart.render(is_unicode=True)
    return _without_scripts(svg)
