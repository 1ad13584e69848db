"""Write a `tables.Table` as markdown (the report), LaTeX (the paper) and CSV (the numbers)."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from core.files import atomic_write

DASH = "—"  # a missing value
# Unicode in the cells -> LaTeX that compiles with pdflatex too
LATEX_SYMBOLS = {"±": r"$\pm$", "—": "---", "−": "$-$", "Δ": r"$\Delta$", "←": r"$\leftarrow$"}
_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
            "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}
_NUMERIC = re.compile(r"^([—+\-−]|[+\-−]?\d)")


def latex_escape(text: str) -> str:
    """Plain text (with markdown `code`) -> LaTeX."""
    text = "".join(_SPECIAL.get(c, c) for c in str(text))
    return symbols(re.sub(r"`([^`]*)`", r"\\texttt{\1}", text))


def symbols(latex: str) -> str:
    for char, code in LATEX_SYMBOLS.items():
        latex = latex.replace(char, code)
    return latex


def numeric_columns(df: pd.DataFrame) -> list[bool]:
    """Columns whose every cell reads as a number (or '—'): right-aligned like numbers."""
    return [len(df) > 0 and all(_NUMERIC.match(str(v)) for v in df[c]) for c in df.columns]


def cell_text(value, digits: int = 2) -> str:
    """One cell as text: floats with `digits` decimals, a missing value as '—', the rest as is."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return DASH
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(df: pd.DataFrame, digits: int = 2) -> str:
    """The report's one markdown renderer. Formatted string cells pass through (tabulate must
    not re-parse '63.10' into 63.1); float cells get `digits` decimals, missing ones '—'."""
    if df.empty:
        return "_no results yet_"
    text = df.astype(object).map(lambda v: cell_text(v, digits))
    align = ["right" if num else "left" for num in numeric_columns(text)]
    return text.to_markdown(index=False, disable_numparse=True, colalign=align)


def latex(table) -> str:
    # a leading hyphen would print as a dash in LaTeX text mode: make it a minus sign
    df = table.display.astype(str).map(lambda v: re.sub(r"^-(?=\d)", "−", v))
    fmt = "".join("r" if num else "l" for num in numeric_columns(df))
    styler = df.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    caption = f"{latex_escape(table.title)}. {latex_escape(table.note)}"
    body = styler.to_latex(caption=caption, label=f"tab:{table.name}", hrules=True, column_format=fmt,
                           position_float="centering")
    return symbols(body)


def write(table, folder: Path) -> dict[str, Path]:
    """tables/<name>.md, .tex and .csv; returns the paths by format."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {ext: folder / f"{table.name}.{ext}" for ext in ("md", "tex", "csv")}
    # each whole or not at all (a full disk must not leave half a table: docs/design.md §7)
    atomic_write(paths["md"], lambda f: f.write(f"# {table.title}\n\n{table.note}\n\n{markdown(table.display)}\n"),
                 binary=False)
    atomic_write(paths["tex"], lambda f: f.write(latex(table)), binary=False)
    atomic_write(paths["csv"], lambda f: table.numbers.to_csv(f, index=False), binary=False)
    return paths
