"""`fastvit-analysis report`: one self-contained report.html from an output directory.

Reads every result JSON written by the subcommands in OUT and in its subfolders (one per model),
draws side-by-side comparison figures from their `plot` data, embeds every figure as base64 PNG,
tabulates the key numbers, and links only to files that exist. Does not import torch.

Example:
    >>> from fastvit_analysis.cli.report import write_report
    >>> write_report("fastvit-demo")            # doctest: +SKIP
    PosixPath('fastvit-demo/report.html')
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


def _compare_figure(analysis: str, entries: list[tuple[str, dict]], fig_dir: Path,
                    payloads: list[dict]) -> Path | None:
    """Draw the side-by-side figure of several models; None when it cannot be drawn."""
    from . import plots

    draw = plots.FIGURES.get(analysis)
    if draw is None or not entries:
        return None
    kwargs = {}
    if analysis == "landscape":
        clip = [p.get("settings", {}).get("clip") for p in payloads]
        kwargs["clip"] = next((c for c in clip if isinstance(c, (int, float))), 42.0)
    try:
        fig = draw(entries, **kwargs)
    except Exception as exc:  # one malformed result must not cost the whole report
        print(f"report: could not draw the {analysis} comparison ({type(exc).__name__}: {exc})")
        return None
    fig_dir.mkdir(parents=True, exist_ok=True)
    png = fig_dir / f"compare_{analysis}.png"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    fig.savefig(fig_dir / f"compare_{analysis}.pdf", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
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
    out = ["<h2 id='claims'>The paper's claims (docs/methods.md §5)</h2><p class='note'>Each claim is a contrast between "
           "models with its 95% interval: <b>supported</b> when the interval excludes 0 on the side the paper "
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


def build_html(root: Path, html_path: Path, title: str) -> tuple[str, int]:
    results = find_results(root)
    base = html_path.parent
    fig_dir = root / "report_figures"
    by_analysis: dict[str, list[tuple[Path, dict]]] = {}
    for path, payload in results:
        by_analysis.setdefault(payload["analysis"], []).append((path, payload))
    models: list[str] = []
    for _, payload in results:
        label = str(payload.get("model", "?"))
        if label not in models and payload["analysis"] != "demo":
            models.append(label)

    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='note'>Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} from "
             f"<code>{html.escape(str(root))}</code>: {len(results)} result files, models: "
             f"{html.escape(', '.join(models) or 'none')}.</p>"]
    if not results:
        parts.append("<p>No results found. Run an analysis first, e.g. "
                     "<code>fastvit-analysis fourier --model demo_resnet --out DIR</code>.</p>")

    parts.append(claims_table(root, base))

    # headline table: the paper's contrasts side by side
    headline_cols = [(a, k, t) for a, k, t in HEADLINE if any(k in p.get("summary", {}) for _, p in by_analysis.get(a, []))]
    if headline_cols:
        parts.append("<h2>At a glance</h2><table><tr><th>model</th>"
                     + "".join(f"<th>{html.escape(t)}</th>" for _, _, t in headline_cols) + "</tr>")
        for label in models:
            cells = []
            for analysis, key, _ in headline_cols:
                value = next((p["summary"].get(key) for _, p in by_analysis.get(analysis, [])
                              if str(p.get("model")) == label and isinstance(p.get("summary"), dict)), None)
                cells.append(f"<td>{_fmt(value)}</td>")
            parts.append(f"<tr><td>{html.escape(label)}</td>{''.join(cells)}</tr>")
        parts.append("</table>")

    for analysis, heading, text in SECTIONS + [(a, a, "") for a in by_analysis
                                              if a not in {s[0] for s in SECTIONS} | {"demo"}]:
        items = by_analysis.get(analysis)
        if not items:
            continue
        parts.append(f"<h2 id='{html.escape(analysis)}'>{html.escape(heading)}</h2><p>{html.escape(text)}</p>")
        entries = [(str(p.get("model", path.parent.name)), p["plot"]) for path, p in items
                   if isinstance(p.get("plot"), dict) and p["plot"]]
        if len(entries) > 1:
            png = _compare_figure(analysis, entries, fig_dir, [p for _, p in items])
            if png is not None:
                parts.append("<figure>" + _img(png, f"{analysis} comparison") + "<figcaption>All models. "
                             + _link(png.with_suffix(".pdf"), base, "PDF") + "</figcaption></figure>")
        parts.append(_table([(str(p.get("model", "?")), p.get("summary", {}) or {}) for _, p in items]))
        parts.append("<div class='models'>")
        for path, payload in items:
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
            parts.append(f"<figure>{''.join(imgs)}<figcaption>{html.escape(label)}{note} · "
                         f"{' · '.join(l for l in links if l)}</figcaption></figure>")
        parts.append("</div>")

    demo = by_analysis.get("demo")
    if demo:
        path, payload = demo[-1]
        stages = payload.get("stages", [])
        parts.append("<h2>Run time</h2><table><tr><th>stage</th><th>model</th><th>budget (s)</th>"
                     "<th>took (s)</th><th>status</th></tr>")
        for s in stages:
            parts.append(f"<tr><td>{html.escape(str(s.get('stage')))}</td><td>{html.escape(str(s.get('model', '')))}"
                         f"</td><td>{_fmt(s.get('budget_s'))}</td><td>{_fmt(s.get('seconds'))}</td>"
                         f"<td>{html.escape(str(s.get('status', '')))}</td></tr>")
        parts.append("</table>")
        total = payload.get("total_seconds")
        if isinstance(total, (int, float)):
            parts.append(f"<p>Total: {total / 60:.1f} min. {_link(path, base, 'demo.json')}</p>")
    parts.append("</body></html>")
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
