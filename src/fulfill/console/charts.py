"""The dashboard's charts, drawn on the server as inline SVG: no script, no library, no request
anywhere. Every series has a fill pattern of its own besides its colour (readable in grey or by
someone who does not tell the colours apart), every bar carries its number in a ``<title>`` and
in text next to it, and every chart has a table alternative on the page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from markupsafe import Markup

from fulfill.domain.dashboard import Bucket

# status → (fill colour, pattern): solid, diagonal hatch, dots, horizontal lines.
SERIES: dict[str, tuple[str, str]] = {
    "SUCCEEDED": ("#2f6b3a", "solid"),
    "FAILED": ("#a3261b", "hatch"),
    "CANCELLED": ("#5a5f6b", "dots"),
    "EXPIRED": ("#8a5a00", "lines"),
}


def seconds_text(value: float | None) -> str:
    """A duration as people read it: ``850 ms``, ``12.3 s``, ``4 min 5 s``, ``2 h 3 min``, ``1 d 4 h``."""
    if value is None:
        return "none"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    whole = round(value)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86_400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86_400} d {whole % 86_400 // 3600} h"


def _pattern(prefix: str, status: str) -> str:
    colour, kind = SERIES.get(status, ("#444", "solid"))
    pid = f"{prefix}-{status.lower()}"
    if kind == "solid":
        body = f'<rect width="6" height="6" fill="{colour}"/>'
    elif kind == "hatch":
        body = (
            f'<rect width="6" height="6" fill="#fff"/>'
            f'<path d="M-1,1 l2,-2 M0,6 l6,-6 M5,7 l2,-2" stroke="{colour}" stroke-width="2"/>'
        )
    elif kind == "dots":
        body = f'<rect width="6" height="6" fill="#fff"/><circle cx="3" cy="3" r="1.6" fill="{colour}"/>'
    else:
        body = f'<rect width="6" height="6" fill="#fff"/><rect y="2" width="6" height="2" fill="{colour}"/>'
    return f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse">{body}</pattern>'


def swatch(status: str, prefix: str = "sw") -> Markup:
    """A small legend square with the series' pattern (its own SVG, so it stands anywhere)."""
    pid = f"{prefix}-{status.lower()}"
    return Markup(  # noqa: S704 (no text from outside: a status names a known pattern)
        f'<svg class="swatch" width="14" height="14" viewBox="0 0 14 14" aria-hidden="true" focusable="false">'
        f"<defs>{_pattern(prefix, status)}</defs>"
        f'<rect x="0.5" y="0.5" width="13" height="13" fill="url(#{pid})" stroke="#222"/></svg>'
    )


def _time_label(epoch: float, bucket_seconds: int) -> str:
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%m-%d %H:%M" if bucket_seconds >= 3600 else "%H:%M")


def bucket_label(epoch: float, bucket_seconds: int) -> str:
    """A bucket's start in UTC, as the table and the tooltips show it."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M")


def stacked_bars(
    buckets: Sequence[Bucket], statuses: Sequence[str], *, bucket_seconds: int, title: str
) -> Markup:
    """Outcomes per bucket, stacked by status (bottom to top in ``statuses`` order)."""
    width, height, left, bottom, top = 720, 240, 44, 28, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max((bucket.total for bucket in buckets), default=0)
    scale_max = max(1, peak)
    step = plot_w / max(1, len(buckets))
    bar_w = max(1.0, step * 0.8)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="exec-title" '
        f'preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="exec-title">{escape(title)}</title>',
        "<defs>" + "".join(_pattern("ex", status) for status in statuses) + "</defs>",
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" stroke="#222"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#222"/>',
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" font-size="11">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    for index, bucket in enumerate(buckets):
        x = left + index * step + (step - bar_w) / 2
        y: float = top + plot_h
        for status in statuses:
            n = bucket.counts.get(status, 0)
            if not n:
                continue
            h = plot_h * n / scale_max
            y -= h
            label = f"{bucket_label(bucket.start_epoch, bucket_seconds)} UTC: {n} {status}"
            parts.append(
                f'<rect x="{x:.2f}" y="{y:.2f}" width="{bar_w:.2f}" height="{h:.2f}" '
                f'fill="url(#ex-{status.lower()})" stroke="#222" stroke-width="0.5">'
                f"<title>{escape(label)}</title></rect>"
            )
    if buckets:
        for index in sorted({0, len(buckets) // 2, len(buckets) - 1}):
            x = left + index * step + step / 2
            anchor = "start" if index == 0 else ("end" if index == len(buckets) - 1 else "middle")
            parts.append(
                f'<text x="{x:.2f}" y="{height - 8}" text-anchor="{anchor}" font-size="11">'
                f"{escape(_time_label(buckets[index].start_epoch, bucket_seconds))}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text in it went through escape())


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str  # what is written next to the bar (its number, with its unit)
    pattern: str = "SUCCEEDED"  # which series' pattern fills it


def hbars(
    bars: Sequence[Bar], *, title: str, prefix: str, width: int = 440, label_width: int = 150
) -> Markup:
    """Horizontal bars, one a row: the label on the left, the number right of the bar."""
    row_h, label_w = 26, label_width
    plot_w = width - label_w - 110
    height = max(1, len(bars)) * row_h + 6
    peak = max((bar.value for bar in bars), default=0.0) or 1.0
    used = sorted({bar.pattern for bar in bars})
    parts = [
        f'<svg class="chart hbars" viewBox="0 0 {width} {height}" role="img" aria-labelledby="{prefix}-title" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{prefix}-title">{escape(title)}</title>',
        "<defs>" + "".join(_pattern(prefix, status) for status in used) + "</defs>",
    ]
    if not bars:
        parts.append('<text x="0" y="18" font-size="13">Nothing in this window.</text>')
    for index, bar in enumerate(bars):
        y = 3 + index * row_h
        w = plot_w * bar.value / peak if bar.value > 0 else 0
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end" font-size="13">{escape(bar.label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1 if bar.value > 0 else 0):.2f}" height="{row_h - 8}" '
            f'fill="url(#{prefix}-{bar.pattern.lower()})" stroke="#222" stroke-width="0.5">'
            f"<title>{escape(bar.label)}: {escape(bar.text)}</title></rect>"
            f'<text x="{label_w + w + 6:.2f}" y="{y + 16}" font-size="13">{escape(bar.text)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text in it went through escape())
