"""Results records and the report built from them.

records (read/write the JSON records) -> frames (tidy frames per stage) -> tables (paper
layouts, mean ± std over seeds) -> render (markdown, LaTeX, CSV); logs (training logs) and
figures (seaborn PNGs); report assembles report.md; `python -m reports` is the command.
"""
