"""The `polyaudit` command: pytest runs the audit; this command renders and compares its reports.
It reads reports; it never loads or runs a model.

    polyaudit report RUN.json --html out.html --md out.md   # render a report (no output flag: table)
    polyaudit report RUN.json --baseline BASE.json --md pr.md   # ... with a vs-baseline column
    polyaudit compare BASE.json NEW.json                     # diff table; exit status like the gate
    polyaudit list                                           # claims, versions and what they need
    polyaudit validate RUN.json                              # schema + integrity check
    polyaudit cache info|clear|prune [--max-gb GB]           # the caches: sizes, remove, cap (LRU)

Exit status: 0 fine, 1 a row regressed against the baseline (compare, or report --baseline),
4 the input was refused (unreadable, tampered, truncated, not a report, other probe or claim
version; the same code as pytest's usage errors, so a CI step treats both alike).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from polyaudit.errors import PolyauditError
from polyaudit.store.limit import PARTS

EXIT_OK, EXIT_REGRESSED, EXIT_REFUSED = 0, 1, 4


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_REFUSED, f"polyaudit: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="polyaudit", description="Render and compare polyaudit reports (pytest runs the audit).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def tolerance_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--tolerance", action="append", default=[], metavar="[CLAIM=]VALUE",
                        help="allowed effect drop (repeatable; VALUE for every claim, CLAIM=VALUE for one)")
        sp.add_argument("--config", default="pyproject.toml", metavar="PYPROJECT",
                        help="read [tool.polyaudit.tolerance] from this file (default ./pyproject.toml)")

    a = sub.add_parser("run", help="audit a model with the claims this polyaudit ships (pytest --pyargs "
                       "polyaudit.claims; every pytest and polyaudit option passes through)",
                       prefix_chars="\x00")  # nothing is parsed here: all of it goes to pytest
    a.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="OPTIONS")

    r = sub.add_parser("report", help="render a JSON report as HTML / Markdown / a terminal table")
    r.add_argument("run", metavar="RUN.json")
    r.add_argument("--html", metavar="PATH", help="write the self-contained HTML report")
    r.add_argument("--md", metavar="PATH", help="write the Markdown report")
    r.add_argument("--json", metavar="PATH", help="write the JSON report (with the baseline comparison)")
    r.add_argument("--baseline", metavar="BASE.json", help="add a vs-baseline comparison")
    r.add_argument("--model-card", action="store_true",
                   help="write a model-card section (Markdown with model-index YAML front matter)")
    r.add_argument("--out", metavar="PATH", help="with --model-card: write it here (default: stdout)")
    tolerance_args(r)

    c = sub.add_parser("compare", help="compare a run with a baseline (exit 1 on a regression)")
    c.add_argument("baseline", metavar="BASE.json")
    c.add_argument("run", metavar="NEW.json")
    c.add_argument("--md", metavar="PATH", help="also write the run's Markdown with a vs-baseline column")
    c.add_argument("--json", metavar="PATH", help="also write the run's JSON with the comparison")
    tolerance_args(c)

    ls = sub.add_parser("list", help="list the claims, their versions and what they need")
    ls.add_argument("--claims", default=None, metavar="DIR",
                    help="folder of claim files (default ./claims if there is one, else the claims installed with "
                         "polyaudit)")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")

    v = sub.add_parser("validate", help="check a report against the schema and its integrity checksum")
    v.add_argument("run", metavar="RUN.json")

    ca = sub.add_parser("cache", help="show, clear or prune polyaudit's caches (activations, results, zoo, plots)")
    ca.add_argument("action", choices=["info", "clear", "prune"],
                    help="prune: evict least recently used entries until the caches fit --max-gb")
    ca.add_argument("--max-gb", metavar="GB", help="the cap for prune (default $POLYAUDIT_CACHE_MAX_GB)")
    ca.add_argument("--cache-dir", metavar="DIR", help="cache root (default $POLYAUDIT_CACHE or ~/.cache/polyaudit)")
    ca.add_argument("--only", choices=CACHE_PARTS, action="append",
                    help="limit to one part (repeatable; default: all of them)")
    return p


CACHE_PARTS = PARTS  # the parts the cache cap prunes


def _folder_size(path: Path) -> tuple[int, int]:
    files = [f for f in path.rglob("*") if f.is_file()]
    return len(files), sum(f.stat().st_size for f in files)


def cmd_cache(args: argparse.Namespace) -> int:
    """Only polyaudit's own sub-folders of the root are touched, never the root itself."""
    import shutil

    from polyaudit.store.root import cache_root

    root = cache_root(args.cache_dir)
    if args.action == "prune":
        return _cache_prune(root, args.max_gb)
    for part in args.only or CACHE_PARTS:
        folder = root / part
        if not folder.is_dir():
            print(f"{folder}: empty")
            continue
        n, size = _folder_size(folder)
        if args.action == "clear":
            shutil.rmtree(folder)
            print(f"{folder}: removed {n} files ({size / 2**20:.1f} MiB)")
        else:
            print(f"{folder}: {n} files, {size / 2**20:.1f} MiB")
    return EXIT_OK


def _cache_prune(root: Path, max_gb: str | None) -> int:
    import os

    from polyaudit.store.limit import ENV_MAX_GB, GB, parse_max_gb, prune, size_text

    if max_gb is None and not os.environ.get(ENV_MAX_GB, "").strip():
        raise PolyauditError(f"cache prune needs a cap: pass --max-gb GB or set ${ENV_MAX_GB}")
    cap = parse_max_gb(max_gb) if max_gb is not None else parse_max_gb(os.environ[ENV_MAX_GB], f"${ENV_MAX_GB}")
    result = prune(root, cap * GB)
    print(f"{root}: removed {result.removed} least recently used entries ({size_text(result.freed)}); "
          f"{size_text(result.remaining)} left, cap {cap:g} GB")
    return EXIT_OK


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 140)


def _write(path: str, text: str) -> None:
    from polyaudit.serial import atomic_write_text

    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise PolyauditError(f"cannot write {path}: {e.strerror or e}") from None
    print(f"written: {path}", file=sys.stderr)


def _with_baseline(doc: Mapping[str, Any], base_path: str, args: argparse.Namespace) -> tuple[dict[str, Any], list[Any]]:
    """The run's document with each row's comparison and the baseline summary attached."""
    from polyaudit.report.baseline import (
        Baseline,
        compare_documents,
        parse_tolerances,
        read_pyproject,
    )
    from polyaudit.report.load import sign

    tolerances = parse_tolerances(args.tolerance, read_pyproject(args.config), args.config)
    base = Baseline.load(base_path)
    diffs, missing = compare_documents(base, doc, tolerances)
    out = {k: v for k, v in doc.items() if k != "integrity"}
    out["rows"] = [{**r, "baseline": d.to_json()} for r, d in zip(doc.get("rows", []), diffs, strict=True)]
    out["baseline"] = base.describe(tolerances, missing)
    return sign(out), diffs


def _emit(doc: Mapping[str, Any], args: argparse.Namespace) -> None:
    from polyaudit.report.document import dumps

    if getattr(args, "html", None):
        from polyaudit.report.html import render_html

        _write(args.html, render_html(doc))
    if getattr(args, "md", None):
        from polyaudit.report.markdown import render_markdown

        _write(args.md, render_markdown(doc))
    if getattr(args, "json", None):
        _write(args.json, dumps(doc))


def cmd_report(args: argparse.Namespace) -> int:
    from polyaudit.report.load import load_report

    doc: dict[str, Any] = load_report(args.run)
    diffs: list[Any] = []
    if args.baseline:
        doc, diffs = _with_baseline(doc, args.baseline, args)
    if args.model_card:
        from polyaudit.report.modelcard import render_model_card

        card = render_model_card(doc)
        if args.out:
            _write(args.out, card)
        else:
            sys.stdout.write(card)
    elif not (args.html or args.md or args.json):
        from polyaudit.report.terminal import render_table

        sys.stdout.write(render_table(doc, width=140))
    _emit(doc, args)
    return EXIT_REGRESSED if any(d.regressed for d in diffs) else EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from polyaudit.report.format import fmt_ci, fmt_num
    from polyaudit.report.load import load_report

    doc, diffs = _with_baseline(load_report(args.run), args.baseline, args)
    console = _console()
    table = Table(title=f"polyaudit compare: {Path(args.run).name} vs baseline {Path(args.baseline).name}")
    for col in ("row", "model", "verdict", "effect (base -> new)", "drop [95% CI]", "tol", "CI", "status"):
        table.add_column(col, overflow="fold")
    for d in diffs:
        status = {"regressed": "[bold red]REGRESSED[/]", "new": "[dim]new[/]"}.get(d.status, "[green]ok[/]")
        model = d.model if d.base_model in (None, d.model) else f"{d.model} (base {d.base_model})"
        table.add_row(*(escape(str(c)) for c in (
            d.key, model, f"{d.base_verdict or '-'} -> {d.new_verdict}",
            f"{fmt_num(d.base_effect)} -> {fmt_num(d.new_effect)}", f"{fmt_num(d.drop)} {fmt_ci(d.drop_ci)}",
            fmt_num(d.tolerance), d.method)), status)
    console.print(table)
    for d in diffs:
        if d.regressed:
            print(d.paragraph(f"baseline {Path(args.baseline).name}"))
    missing = doc["baseline"].get("missing") or []
    if missing:
        print(f"baseline rows not in this run: {', '.join(missing)}")
    n_reg = sum(d.regressed for d in diffs)
    print(f"{len(diffs)} rows: {n_reg} regressed, {sum(d.status == 'new' for d in diffs)} without a baseline row")
    _emit(doc, args)
    return EXIT_REGRESSED if n_reg else EXIT_OK


def _default_claims() -> Path:
    """./claims in a clone of the repository, else the claims shipped inside the package."""
    if Path("claims").is_dir():
        return Path("claims")
    import importlib.util

    spec = importlib.util.find_spec("polyaudit.claims")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else Path("claims")


def discover_claims(folder: str | Path) -> list[dict[str, Any]]:
    """The claims in a folder of claim files: imported (not run) to read their `claim` markers."""
    import pytest

    from polyaudit.plugin.marker import read_marker

    root = Path(folder)
    if not root.is_dir():
        raise PolyauditError(f"no claims folder {root}: run from the project root or pass --claims DIR")
    out = []
    for path in sorted(root.glob("test_*.py")):
        spec = importlib.util.spec_from_file_location(f"_polyaudit_claims_{path.stem}", path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        summary = (module.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        for name, fn in vars(module).items():
            for mark in getattr(fn, "pytestmark", []) if name.startswith("test") else []:
                if mark.name != "claim":
                    continue
                try:
                    claim = read_marker(mark, f"{path}::{name}")
                except pytest.UsageError as e:
                    raise PolyauditError(str(e)) from None
                declared, check = claim.spec, claim.check
                stat = declared.statistic(check.statistic)
                out.append({
                    "claim": declared.id, "version": declared.version, "title": declared.title,
                    "source": declared.source, "name": check.name, "statistic": stat.text,
                    "predicted": stat.predicted, "statistics": {s.key: s.text for s in declared.statistics},
                    "sites": list(check.sites), "probe": check.probe or "per model",
                    "min_samples": check.min_samples, "file": str(path), "summary": summary,
                })
    return sorted(out, key=lambda c: (c["claim"], c["name"]))


def cmd_list(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    folder = args.claims or _default_claims()
    claims = discover_claims(folder)
    if args.json:
        print(json.dumps(claims, indent=2))
        return EXIT_OK
    table = Table(title=f"polyaudit claims in {folder}")
    for col in ("claim", "version", "name", "statistic", "sites", "probe", "min samples", "prediction"):
        table.add_column(col, overflow="fold")
    for c in claims:
        table.add_row(*(escape(str(x)) for x in (c["claim"], c["version"], c["name"], c["statistic"],
                                                  ", ".join(c["sites"]) or "-", c["probe"], c["min_samples"],
                                                  c["summary"])))
    _console().print(table)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from polyaudit.report.load import load_report

    doc = load_report(args.run, require_integrity=True)
    print(f"{args.run}: valid polyaudit.report/1, {len(doc['rows'])} rows, integrity ok")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """`pytest --pyargs polyaudit.claims ARGS`: the installed claims, the audit's own exit status."""
    import pytest

    return int(pytest.main(["--pyargs", "polyaudit.claims", *args.pytest_args]))


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    handler = {"report": cmd_report, "compare": cmd_compare, "list": cmd_list, "validate": cmd_validate,
               "cache": cmd_cache, "run": cmd_run}[args.command]
    try:
        return handler(args)
    except PolyauditError as e:
        print(f"polyaudit: error: {e}", file=sys.stderr)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
