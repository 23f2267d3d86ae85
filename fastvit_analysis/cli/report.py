"""`fastvit-analysis report`: one self-contained report.html from an output directory.

Reads every result JSON written by the subcommands in OUT and in its subfolders (one per model),
rebuilds each "result" into the library's result object (`load_result`) and draws the side-by-side
comparison figures with the library's figure layer (`fastvit_analysis.plot`), embeds every figure as
base64 PNG, tabulates the key numbers, and links only to files that exist.

Example (an empty results folder gives a report with no results):
    >>> import tempfile
    >>> from fastvit_analysis.cli.report import write_report
    >>> write_report(tempfile.mkdtemp()).name
    'report.html'
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import os
from pathlib import Path
from typing import Any

from ..common.jsonio import read_json

SECTIONS = [
    ("train", "Training", "Training curves of each model (loss on the training split, accuracy on the test split)."),
    ("max_eigen", "Hessian max-eigenvalue spectra",
     "Top eigenvalues of each mini-batch's Hessian, pooled (paper Fig. 1c/4). Many negative values mean a "
     "non-convex loss; a smaller positive mean means a flatter one."),
    ("hessian_spectrum", "Top Hessian eigenvalues", "Lanczos top-k eigenvalues with residuals."),
    ("hessian_density", "Hessian spectral density", "Stochastic Lanczos quadrature."),
    ("hessian_trace", "Hessian trace", "Hutch++ estimate with standard error."),
    ("landscape", "Loss landscapes",
     "Loss on filter-normalised random directions around the trained weights (Li et al.; paper Fig. 1)."),
    ("fourier", "Fourier analysis of feature maps",
     "Relative log amplitude Δ of the feature maps' spectra (paper Fig. 2a). Lower Δ at high frequency "
     "means the blocks act as low-pass filters (MSAs), higher means high-pass (Convs)."),
    ("robustness", "Robustness to frequency-based noise",
     "Accuracy change under noise restricted to a frequency band (paper Fig. 2b)."),
    ("variance", "Feature-map variance", "Variance of the feature maps by depth (paper Fig. 9); MSA blocks shaded."),
    ("cka", "Mini-batch CKA", "Similarity between block outputs (Nguyen et al.); block structure follows stages."),
    ("shape_bias", "Shape vs texture bias",
     "Cue-conflict test images carry the shape of one class and the texture of another; the shape bias is the "
     "fraction of cue-following decisions that follow the shape (Wilson 95% interval; Geirhos et al. 2019)."),
]
HEADLINE = [  # (analysis, summary key, column title) for the paper's contrasts at a glance (summary() names)
    ("train", "test_accuracy", "test acc. (%)"),
    ("max_eigen", "negative_fraction", "neg. eigenvalue fraction"),
    ("max_eigen", "positive_mean", "mean pos. eigenvalue"),
    ("landscape", "border_rise", "landscape rise at border"),
    ("fourier", "high_frequency/last", "Δ log amp. at π (last block)"),
    ("robustness", "clean_accuracy", "clean acc. (%), noise test"),
    ("robustness", "delta_accuracy/high", "ΔAcc at f ≥ 0.6π (%)"),
    ("variance", "variance/last", "variance (last block)"),
    ("shape_bias", "shape bias", "shape bias"),
]
VERDICT_COLOUR = {"supported": "#d8f0d8", "not supported": "#f6d6d6", "inconclusive": "#f4f0d0",
                  "not measured": "#eeeeee"}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
     color:#222;padding:0 1em}
h1{font-size:1.6em} h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right} th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.3em 0}
.models{display:flex;flex-wrap:wrap;gap:1em} .models figure{flex:1 1 360px;margin:0}
figcaption{font-size:.85em;color:#555} .note{color:#666;font-size:.9em} code{background:#f4f4f4;padding:0 .2em}
"""


def find_results(root: Path, max_depth: int = 3,
                 unreadable: list[tuple[Path, str]] | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """(path, payload) of every result JSON (a dict with an 'analysis' key) under `root`.

    Files that cannot be read or parsed are appended to `unreadable` as (path, reason)."""

    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "report_figures"
                             and depth < max_depth)
        for name in sorted(filenames):
            if not name.endswith(".json") or name == "meta.json":
                continue
            path = Path(dirpath) / name
            try:
                payload = read_json(path)
            except (OSError, ValueError) as e:
                if unreadable is not None:
                    reason = e.strerror if isinstance(e, OSError) and e.strerror else f"not valid JSON ({e})"
                    unreadable.append((path, str(reason)))
                continue
            if isinstance(payload, dict) and isinstance(payload.get("analysis"), str):
                found.append((path, payload))
    return found


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, dict) and {"value", "ci95", "n"} <= set(value):  # an Estimate: "v [lo, hi]"
        lo, hi = value["ci95"] or [None, None]
        return f"{_fmt(value['value'])} [{_fmt(lo)}, {_fmt(hi)}] <span class='note'>n={_fmt(value['n'])}</span>"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value[:8]) + (" …" if len(value) > 8 else "")
    return html.escape(str(value))


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _link(path: Path, base: Path, text: str) -> str:
    if not path.is_file():
        return ""
    rel = os.path.relpath(path, base)
    return f'<a href="{html.escape(Path(rel).as_posix())}">{html.escape(text)}</a>'


# the "type" of results written before to_dict() recorded one
ANALYSIS_TYPES = {"shape_bias": "ShapeBiasResult"}


def _results_of(analysis: str, items: list[tuple[Path, dict]]) -> dict[str, Any]:
    """{model label: result object} rebuilt from each payload's "result" (its `to_dict()`); payloads
    without one, or that do not rebuild, are left out with a line saying so."""
    from ..common.results import load_result

    results: dict[str, Any] = {}
    for path, payload in items:
        data = payload.get("result")
        if not isinstance(data, dict) or not data:
            continue
        label = str(payload.get("model", path.parent.name))
        if label in results:
            label = f"{label} ({path.parent.name})"
        try:
            results[label] = load_result(data, kind=ANALYSIS_TYPES.get(analysis))
        except Exception as exc:  # one malformed result must not cost the whole report
            print(f"report: could not read the {analysis} result of {path} ({type(exc).__name__}: {exc})")
    return results


def _compare_figure(analysis: str, items: list[tuple[Path, dict]], fig_dir: Path) -> Path | None:
    """Draw the side-by-side figure of the models in `items` with the library's figure layer
    (`fastvit_analysis.plot.FIGURES`); None when fewer than two results can be drawn."""
    from ..plot import FIGURES
    from ..plot.style import close

    draw = FIGURES.get(analysis)
    results = _results_of(analysis, items) if draw is not None else {}
    if len(results) < 2:
        return None
    kwargs = {}
    if analysis == "landscape":
        clip = [p.get("settings", {}).get("clip") for _, p in items]
        kwargs["clip"] = next((c for c in clip if isinstance(c, (int, float))), 42.0)
    try:
        fig = draw(results, **kwargs)
    except Exception as exc:  # one malformed result must not cost the whole report
        print(f"report: could not draw the {analysis} comparison ({type(exc).__name__}: {exc})")
        return None
    fig_dir.mkdir(parents=True, exist_ok=True)
    png = fig_dir / f"compare_{analysis}.png"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    fig.savefig(fig_dir / f"compare_{analysis}.pdf", bbox_inches="tight")
    close(fig)
    return png


def _table(rows: list[tuple[str, dict[str, Any]]], keys: list[str] | None = None) -> str:
    if not rows:
        return ""
    if keys is None:
        keys = []
        for _, summary in rows:
            keys += [k for k in summary if k not in keys and (not isinstance(summary[k], dict)
                                                              or {"value", "ci95", "n"} <= set(summary[k]))]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr><td>" + html.escape(label) + "</td>" + "".join(f"<td>{_fmt(s.get(k))}</td>" for k in keys)
                   + "</tr>" for label, s in rows)
    return f"<table><tr><th>model</th>{head}</tr>{body}</table>"


def claims_table(root: Path, base: Path) -> str:
    """The paper's claims C1–C8 from ROOT/claims.json (written by `demo`/`reproduce`): contrast with its
    95% interval and count, the expected sign, the verdict and the detail; '' when there is no claims.json."""
    path = root / "claims.json"
    try:
        claims = read_json(path)
    except (OSError, ValueError):
        return ""
    rows = claims.get("rows") if isinstance(claims, dict) else None
    if not isinstance(rows, list):
        return ""
    out = ["<h2 id='claims'>The paper's claims (docs/methods.md §5)</h2><p class='note'>Each claim is a contrast "
           "between models with its 95% interval: <b>supported</b> when the interval excludes 0 on the side the paper "
           "expects, <b>not supported</b> when it excludes 0 on the other side, <b>inconclusive</b> when it covers "
           "0. Verdicts come from the numbers alone. " + _link(path, base, "claims.json") + "</p>",
           "<table><tr><th>claim</th><th>what the paper says</th><th>contrast [95% interval]</th><th>n</th>"
           "<th>expected</th><th>verdict</th><th>detail</th></tr>"]
    for row in rows:
        if not isinstance(row, dict):
            continue
        contrast = row.get("contrast") or {}
        lo, hi = (contrast.get("ci95") or [None, None]) if isinstance(contrast, dict) else (None, None)
        value = contrast.get("value") if isinstance(contrast, dict) else None
        text = "–" if value is None else f"{_fmt(value)} [{_fmt(lo)}, {_fmt(hi)}]"
        sign = row.get("expected_sign")
        expected = {1: "&gt; 0", -1: "&lt; 0"}.get(sign, _fmt(sign))
        verdict = str(row.get("verdict", "?"))
        colour = VERDICT_COLOUR.get(verdict, "#ffffff")
        out.append(f"<tr><td>{html.escape(str(row.get('id', '?')))}</td><td>{html.escape(str(row.get('title', '')))}"
                   f"</td><td>{text}</td><td>{_fmt(contrast.get('n') if isinstance(contrast, dict) else None)}</td>"
                   f"<td>{expected}</td><td style='background:{colour}'>{html.escape(verdict)}</td>"
                   f"<td class='note'>{html.escape(str(row.get('detail', '')))}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _header(title: str, root: Path, results: list, models: list[str]) -> str:
    text = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class='note'>Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} from "
            f"<code>{html.escape(str(root))}</code>: {len(results)} result files, models: "
            f"{html.escape(', '.join(models) or 'none')}.</p>")
    if not results:
        text += ("<p>No results found. Run an analysis first, e.g. "
                 "<code>fastvit-analysis fourier --model demo_resnet --out DIR</code>.</p>")
    return text


def _glance_table(by_analysis: dict[str, list[tuple[Path, dict]]], models: list[str]) -> str:
    """The paper's contrasts side by side: one row per model, one column per HEADLINE number found."""
    columns = [(a, k, t) for a, k, t in HEADLINE
               if any(k in p.get("summary", {}) for _, p in by_analysis.get(a, []))]
    if not columns:
        return ""

    def cell(label: str, analysis: str, key: str) -> str:
        value = next((p["summary"].get(key) for _, p in by_analysis.get(analysis, [])
                      if str(p.get("model")) == label and isinstance(p.get("summary"), dict)), None)
        return f"<td>{_fmt(value)}</td>"

    rows = "".join(f"<tr><td>{html.escape(label)}</td>" + "".join(cell(label, a, k) for a, k, _ in columns)
                   + "</tr>" for label in models)
    head = "".join(f"<th>{html.escape(t)}</th>" for _, _, t in columns)
    return f"<h2>At a glance</h2><table><tr><th>model</th>{head}</tr>{rows}</table>"


def _model_figure(analysis: str, path: Path, payload: dict, base: Path) -> str:
    """One model's own figure(s) of an analysis, with links to its JSON and to the other formats."""
    label = str(payload.get("model", "?"))
    links = [_link(path, base, "JSON")]
    imgs = []
    for name in payload.get("figures", []) or []:
        fig_path = path.parent / name
        if name.endswith(".png") and fig_path.is_file():
            imgs.append(_img(fig_path, f"{analysis} {label}"))
        elif fig_path.is_file():
            links.append(_link(fig_path, base, Path(name).suffix.lstrip(".").upper()))
    seconds = payload.get("seconds")
    note = f" · {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    return (f"<figure>{''.join(imgs)}<figcaption>{html.escape(label)}{note} · "
            f"{' · '.join(link for link in links if link)}</figcaption></figure>")


def _analysis_section(analysis: str, heading: str, text: str, items: list[tuple[Path, dict]],
                      fig_dir: Path, base: Path) -> str:
    """Heading, the comparison figure of all models, the summary table and each model's figures."""
    parts = [f"<h2 id='{html.escape(analysis)}'>{html.escape(heading)}</h2><p>{html.escape(text)}</p>"]
    png = _compare_figure(analysis, items, fig_dir)
    if png is not None:
        parts.append("<figure>" + _img(png, f"{analysis} comparison") + "<figcaption>All models. "
                     + _link(png.with_suffix(".pdf"), base, "PDF") + "</figcaption></figure>")
    parts.append(_table([(str(p.get("model", "?")), p.get("summary", {}) or {}) for _, p in items]))
    parts.append("<div class='models'>" + "".join(_model_figure(analysis, path, p, base) for path, p in items)
                 + "</div>")
    return "".join(parts)


def _runtime_section(demo: list[tuple[Path, dict]], base: Path) -> str:
    """The stages of the last demo run with their budgets and times."""
    if not demo:
        return ""
    path, payload = demo[-1]
    rows = "".join(f"<tr><td>{html.escape(str(s.get('stage')))}</td><td>{html.escape(str(s.get('model', '')))}"
                   f"</td><td>{_fmt(s.get('budget_s'))}</td><td>{_fmt(s.get('seconds'))}</td>"
                   f"<td>{html.escape(str(s.get('status', '')))}</td></tr>" for s in payload.get("stages", []))
    out = ("<h2>Run time</h2><table><tr><th>stage</th><th>model</th><th>budget (s)</th>"
           f"<th>took (s)</th><th>status</th></tr>{rows}</table>")
    total = payload.get("total_seconds")
    if isinstance(total, (int, float)):
        out += f"<p>Total: {total / 60:.1f} min. {_link(path, base, 'demo.json')}</p>"
    return out


def _unreadable_section(unreadable: list[tuple[Path, str]], root: Path) -> str:
    """The JSON files under OUT that could not be read (named, not linked), so that nothing is missing silently."""
    if not unreadable:
        return ""
    rows = "".join(f"<li><code>{html.escape(str(p.relative_to(root) if p.is_relative_to(root) else p))}</code>: "
                   f"{html.escape(reason)}</li>" for p, reason in unreadable)
    return f"<h2>Files that could not be read</h2><ul class='note'>{rows}</ul>"


def _sections(by_analysis: dict[str, list[tuple[Path, dict]]]) -> list[tuple[str, str, str]]:
    """(analysis, heading, text) in the report's order: SECTIONS first, then any other analysis found."""
    known = {s[0] for s in SECTIONS}
    return ([s for s in SECTIONS if by_analysis.get(s[0])]
            + [(a, a, "") for a in by_analysis if a not in known | {"demo"}])


def build_html(root: Path, html_path: Path, title: str) -> tuple[str, int]:
    """The report's HTML and the number of result files: header, claims table, at-a-glance table, one
    section per analysis, run time, unreadable files."""
    unreadable: list[tuple[Path, str]] = []
    results = find_results(root, unreadable=unreadable)
    base = html_path.parent
    by_analysis: dict[str, list[tuple[Path, dict]]] = {}
    for path, payload in results:
        by_analysis.setdefault(payload["analysis"], []).append((path, payload))
    models = list(dict.fromkeys(str(p.get("model", "?")) for _, p in results if p["analysis"] != "demo"))
    parts = [_header(title, root, results, models), claims_table(root, base), _glance_table(by_analysis, models)]
    parts += [_analysis_section(a, heading, text, by_analysis[a], root / "report_figures", base)
              for a, heading, text in _sections(by_analysis)]
    parts += [_runtime_section(by_analysis.get("demo", []), base), _unreadable_section(unreadable, root),
              "</body></html>"]
    return "".join(parts), len(results)


def write_report(out: str | os.PathLike, html_path: str | os.PathLike | None = None,
                 title: str = "fastvit-analysis report") -> Path:
    """Write the report of the results under `out` to `html_path` (default OUT/report.html)."""
    root = Path(out).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--out: results directory {str(root)!r} does not exist")
    target = Path(html_path).expanduser() if html_path else root / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    text, _ = build_html(root, target, title)
    from ..common.jsonio import atomic_write_text

    atomic_write_text(target, text)
    return target


def run_report(args) -> int:
    root = Path(args.out).expanduser()
    target = write_report(root, args.html, args.title)
    unreadable: list[tuple[Path, str]] = []
    count = len(find_results(root, unreadable=unreadable))
    print(f"report: {count} result files -> {target}")
    for path, reason in unreadable:
        print(f"report: could not read {path}: {reason}")
    if unreadable:
        print(f"report: {len(unreadable)} file(s) could not be read and are missing from the report")
    return 0
