"""python -m reports --results DIR --out DIR

Regenerates the report (report.md, tables/, figures/) from existing results records;
nothing is rerun."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

from core import cli
from core.errors import UserError


def main(argv=None) -> int:
    p = cli.Parser(prog="python -m reports", description=__doc__.split("\n")[0])
    p.add_argument("--results", default="results", help="directory of results records (default: results)")
    p.add_argument("--out", default="report", help="where report.md, tables/ and figures/ go (default: report)")
    args = p.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"error: {args.results}: results directory not found", file=sys.stderr)
        return 2
    try:
        cli.writable_dir(args.out, "--out")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from reports.report import build  # pandas, matplotlib, seaborn: not for --help
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            path = build(Path(args.results), Path(args.out))
        except UserError as exc:  # records that cannot be compared as asked (tables.ReportError)
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (KeyboardInterrupt, OSError) as exc:  # its files are written whole or not at all
            return cli.fault(exc, "; the report may be incomplete: run the command again")
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(f"[reports] {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
