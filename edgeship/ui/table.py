"""Terminal tables through rich: fit the width, text left, numbers right, plain when piped.

A command declares its columns once (``Column``: a stable JSON key, a header, a kind and a
priority) and adds rows as dicts of raw values. The same ``Table`` then renders for a
person (``render``: the low-priority columns are dropped first until the table fits, long
text wraps inside its own column, numbers keep sensible significant digits, a time column
switches to µs when its median value is below a millisecond) or for a machine
(``records``: the raw values under the stable keys, for ``--json``).

Width: a terminal's own width; when stdout is not a terminal (CI logs, ``| less``), a fixed
``PLAIN_WIDTH`` so logs are deterministic, with no ANSI codes and only ASCII rules.
``wide=True`` (``--wide``) prints every column at its full width.
"""

from __future__ import annotations

import io
import math
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

PLAIN_WIDTH = 100
KINDS = ("text", "number", "time", "bytes", "percent")


@dataclass(frozen=True)
class Column:
    """One column.

    kind: ``text`` (left-aligned, may wrap when ``wrap``), ``number`` (right-aligned, ``digits``
    significant digits or ``fmt``), ``time`` (a value in milliseconds; the column shows ms, or
    µs when every value is below 1 ms), ``bytes`` (a size in bytes; shown in KiB or MiB),
    ``percent`` (a fraction; shown as %). A ``str`` value in a numeric column is shown as is
    (e.g. ``-``); ``None`` is an empty cell.
    priority: 0 is always shown; the higher, the earlier the column is dropped to fit.
    """

    key: str
    header: str
    kind: str = "text"
    priority: int = 0
    digits: int = 3
    fmt: str | Callable[[Any], str] | None = None
    wrap: bool = False
    max_width: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column '{self.key}': kind '{self.kind}' is not one of {', '.join(KINDS)}")

    @property
    def numeric(self) -> bool:
        return self.kind != "text"


def sig(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, never in exponent form (1234.5 -> '1235')."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


@dataclass
class Table:
    columns: Sequence[Column]
    title: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    styles: list[str | None] = field(default_factory=list)

    def add_row(self, style: str | None = None, **values: Any) -> None:
        unknown = set(values) - {c.key for c in self.columns}
        if unknown:
            raise KeyError(f"unknown column(s) {sorted(unknown)}; declared: {[c.key for c in self.columns]}")
        self.rows.append(values)
        self.styles.append(style)

    def records(self) -> list[dict[str, Any]]:
        """The raw values under the stable column keys (every column, for ``--json``)."""
        return [{c.key: row.get(c.key) for c in self.columns} for row in self.rows]

    # -- rendering ---------------------------------------------------------------------------

    def cells(self) -> tuple[list[str], list[list[str]]]:
        """Headers and formatted cells of every column (units chosen per column)."""
        heads, cols = [], []
        for c in self.columns:
            head, fmt = _formatter(c, [r.get(c.key) for r in self.rows])
            heads.append(head)
            cols.append([_cell(r.get(c.key), fmt) for r in self.rows])
        return heads, [list(r) for r in zip(*cols)] if cols else []

    def render(self, width: int | None = None, wide: bool = False, color: bool = False) -> str:
        """The table as text at most ``width`` columns wide (``wide``: every column, no limit)."""
        from rich import box
        from rich.console import Console
        from rich.table import Table as RichTable

        width = width or PLAIN_WIDTH
        heads, rows = self.cells()
        keep = list(range(len(self.columns)))
        if not wide:
            keep = _fit(self.columns, heads, rows, width)
        dropped = [self.columns[i].header for i in range(len(self.columns)) if i not in keep and not _empty(rows, i)]
        rule = box.Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True)
        t = RichTable(box=rule, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), expand=False,
                      title=None, header_style="bold" if color else None)
        for i in keep:
            c = self.columns[i]
            # only wrapping columns give up width: numbers and names are never cut short
            natural = max([len(heads[i])] + [len(r[i]) for r in rows])
            t.add_column(heads[i], justify="right" if c.numeric else "left", no_wrap=c.numeric or not c.wrap,
                         overflow="fold" if c.wrap else "ellipsis", max_width=None if wide else c.max_width,
                         min_width=None if c.wrap else min(natural, c.max_width or natural))
        for row, style in zip(rows, self.styles):
            t.add_row(*(row[i] for i in keep), style=style if color else None)
        buf = io.StringIO()
        console = Console(file=buf, width=100_000 if wide else width, force_terminal=color,
                          color_system="standard" if color else None, legacy_windows=False, emoji=False,
                          highlight=False, markup=False)
        console.print(t, crop=not wide)
        lines = [ln.rstrip() for ln in buf.getvalue().splitlines()]
        limit = None if wide else width
        if self.title:
            lines[:0] = _wrap(self.title, limit)
        if dropped:
            lines += _wrap(f"(not shown, to fit {width} columns: {', '.join(dropped)}; --wide shows all)", limit)
        return "\n".join(lines)


def _wrap(text: str, width: int | None) -> list[str]:
    import textwrap

    return [text] if width is None or len(text) <= width else textwrap.wrap(text, width, break_on_hyphens=False)


def _formatter(c: Column, values: list[Any]) -> tuple[str, Callable[[Any], str]]:
    """The header (with the unit the column settled on) and the cell formatter."""
    if c.fmt is not None:
        fmt = c.fmt
        return c.header, (fmt if callable(fmt) else fmt.format)   # type: ignore[union-attr]
    nums = [abs(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if c.kind == "time":
        if nums and sorted(nums)[len(nums) // 2] < 1:   # the median row decides, so one outlier stays readable
            return f"{c.header} µs", lambda v: sig(v * 1000, c.digits)
        return f"{c.header} ms", lambda v: sig(v, c.digits)
    if c.kind == "bytes":
        if nums and max(nums) >= 10 * 1024 * 1024:
            return f"{c.header} MiB", lambda v: sig(v / 2**20, c.digits)
        return f"{c.header} KiB", lambda v: f"{v / 1024:.1f}"
    if c.kind == "percent":
        return c.header, lambda v: f"{100 * v:.{max(0, c.digits - 2)}f}%"
    if c.kind == "number":
        return c.header, lambda v: str(v) if isinstance(v, int) else sig(v, c.digits)
    return c.header, str


def _cell(v: Any, fmt: Callable[[Any], str]) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return fmt(v)


def _empty(rows: list[list[str]], i: int) -> bool:
    return bool(rows) and all(not r[i] for r in rows)


def _fit(columns: Sequence[Column], heads: list[str], rows: list[list[str]], width: int) -> list[int]:
    """Indices of the columns to show: drop the highest priority number first until it fits.

    Wrapping text columns count at their header width (or 20) since rich wraps them.
    """
    def natural(i: int) -> int:
        w = max([len(heads[i])] + [len(r[i]) for r in rows])
        if columns[i].wrap:
            w = min(w, max(len(heads[i]), 20))
        cap = columns[i].max_width
        return min(w, cap) if cap else w

    # a column with no value in any row says nothing: gone first (a numeric one, or a droppable one)
    keep = [i for i in range(len(columns)) if not (_empty(rows, i) and (columns[i].numeric or columns[i].priority))]
    widths = {i: natural(i) for i in keep}

    def total() -> int:
        return sum(widths[i] for i in keep) + 2 * (len(keep) - 1)   # 1 pad + 1 divider between columns

    for i in sorted((i for i in keep if columns[i].priority > 0), key=lambda i: (-columns[i].priority, -i)):
        if total() <= width:
            break
        keep.remove(i)
    return keep


# -- where and how to print ---------------------------------------------------------------------

def is_tty(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def terminal_width(stream: TextIO | None = None) -> int:
    """The terminal's width when ``stream`` is one, else the deterministic ``PLAIN_WIDTH``."""
    if not is_tty(stream):
        return PLAIN_WIDTH
    return shutil.get_terminal_size((PLAIN_WIDTH, 24)).columns


def show(table: Table, wide: bool = False, stream: TextIO | None = None) -> None:
    """Print ``table`` to stdout fitted to the terminal (colour only on a terminal)."""
    stream = stream or sys.stdout
    print(table.render(terminal_width(stream), wide=wide, color=is_tty(stream)), file=stream)


def warn(lines: Iterable[str], prefix: str = "warning: ") -> None:
    """Warnings and notes go to stderr, never into a table on stdout, wrapped like the tables at
    the terminal's width (``PLAIN_WIDTH`` when piped), continuation lines indented; words are
    never cut, so a path or command longer than the width stays whole."""
    import textwrap

    width = terminal_width(sys.stderr)
    for line in lines:
        text = f"{prefix}{line}"
        if len(text) > width:
            text = "\n".join(textwrap.wrap(text, width, subsequent_indent="  ", break_long_words=False,
                                           break_on_hyphens=False))
        print(text, file=sys.stderr)


def render(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A quick all-text table (first column left, the others right), for callers with no columns."""
    cols = [Column(f"c{i}", h, kind="text" if i == 0 else "number") for i, h in enumerate(head)]
    t = Table(cols)
    for r in rows:
        t.add_row(**{f"c{i}": str(v) for i, v in enumerate(r)})
    return t.render(wide=True)
