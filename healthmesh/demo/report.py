"""One self-contained HTML page with the demo's figures and charts (images inlined)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from healthmesh.demo.pipeline import DemoResult

__all__ = ["write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #1d2a36; }
h1 { margin-bottom: 0; } h2 { border-bottom: 2px solid #2b6cb0; padding-bottom: .2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; margin: .6rem 0; } td, th { border: 1px solid #cbd5e0; padding: .25rem .6rem; }
th { background: #edf2f7; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(20rem, 1fr)); gap: 1rem; }
figure { margin: 0; } figure img { width: 100%; border: 1px solid #e2e8f0; } figcaption { font-size: .85rem; }
.muted { color: #718096; font-size: .9rem; }
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="n">{value:,.3f}</td>'
    if isinstance(value, int):
        return f'<td class="n">{value:,}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def _charts(folder: Path, limit: int = 12) -> str:
    images = sorted(folder.rglob("*.png"))[:limit] if folder.is_dir() else []
    return '<div class="grid">' + "".join(_image(p, p.stem.replace("_", " ")) for p in images) + "</div>"


def _ingest_section(result: DemoResult) -> str:
    return _table(*result.hub_rows())


def _risk_section(result: DemoResult) -> str:
    if not result.risk:
        return "<p>not run</p>"
    from healthmesh.risk.registry import SUMMARY_METRICS  # here: the risk package is slow to import

    keys = list(SUMMARY_METRICS)
    rows = [
        [f"{result.risk['trained_at']} (internal test)", *(result.risk["train"].get(k, "") for k in keys)]
    ]
    rows += [
        [f"{hub} (external)", *(m.get(k, "") for k in keys)] for hub, m in result.risk["validation"].items()
    ]
    plots = _charts(Path(result.risk["model_dir"]), limit=4)
    return _table(["where", *keys], rows) + plots


def _federation_section(result: DemoResult) -> str:
    if not result.federation:
        return "<p>not run (--no-federation)</p>"
    fed = result.federation
    count_rows = [[site, *counts.values()] for site, counts in fed["count"]["per_site"].items()]
    header = ["hub", *next(iter(fed["count"]["per_site"].values())).keys()] if count_rows else ["hub"]
    validation = [
        [site, *(m.get(k, "") for k in ("auroc", "brier", "n"))]
        for site, m in fed["validation"]["per_site"].items()
    ]
    return (
        "<h3>Federated count: persons with type 2 diabetes (suppressed at each hub, -1 = suppressed)</h3>"
        + _table(header, count_rows)
        + "<h3>Federated logistic regression (FedAvg), validated at every hub</h3>"
        + _table(["hub", "auroc", "brier", "n"], validation)
        + f'<p class="muted">bytes exchanged: {fed.get("bytes_exchanged", 0):,}; only aggregates and parameters left the hubs.</p>'
    )


def _forecast_section(result: DemoResult) -> str:
    regions = result.forecast.get("regions", {}) if isinstance(result.forecast, dict) else {}
    rows = []
    for region, info in regions.items():
        week, rt, exceed = info.get("next_week", {}), info.get("rt", {}), info.get("exceedance", {})
        rows.append([
            region,
            str(week.get("week", "")),
            f"{week.get('median', float('nan')):.1f}",
            f"{week.get('lower95', float('nan')):.1f} - {week.get('upper95', float('nan')):.1f}",
            f"{rt.get('mean', float('nan')):.2f} ({rt.get('lower95', float('nan')):.2f} - {rt.get('upper95', float('nan')):.2f})",
            f"{exceed.get('probability', float('nan')):.2f} (> {exceed.get('threshold', '')})",
        ])  # fmt: skip
    header = ["region", "week", "ILI visits, median", "95% interval", "latest Rt (95% CrI)", "P(exceed)"]
    return _table(header, rows) + _charts(result.workdir / "forecasts")


def write_report(result: DemoResult, services: list[dict[str, str]] | None = None) -> Path:
    """Write ``report.html`` in the demo's work folder and return its path."""
    quality_rows = [[hub, *(str(v) for v in summary.values())] for hub, summary in result.quality.items()]
    quality_header = ["hub", *next(iter(result.quality.values())).keys()] if result.quality else ["hub"]
    catalog_rows = [
        [hub, c.get("person_count", ""), json_period(c), c.get("cdm_version", "")]
        for hub, c in result.catalog.items()
    ]
    parts = [
        "<h1>healthmesh: the three-hub network</h1>",
        f'<p class="muted">work folder {html.escape(str(result.workdir))}; step times (s): '
        + ", ".join(f"{k} {v}" for k, v in result.timings.items())
        + "</p>",
        "<h2>1. Integration: FHIR Bulk NDJSON into each hub's OMOP CDM v5.4</h2>",
        _ingest_section(result),
        "<h2>2. Quality and characterization (published only as suppressed aggregates)</h2>",
        _table(quality_header, quality_rows),
        _table(["hub", "persons (catalog)", "period", "CDM"], catalog_rows),
        *(_charts(Path(result.characterization[hub]), limit=3) for hub in result.characterization),
        "<h2>3. Diabetes risk: trained at gyeonggi, validated at the other hubs</h2>",
        _risk_section(result),
        "<h2>4. Influenza-like illness: regional forecasts and Rt</h2>",
        _forecast_section(result),
        "<h2>5. Federation over Flower</h2>",
        _federation_section(result),
    ]
    if services:
        parts += [
            "<h2>6. Hub services</h2>",
            _table(["hub", "url"], [[s["hub"], s["url"]] for s in services]),
        ]
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>healthmesh demo</title><style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    path = result.workdir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def json_period(catalog: dict[str, Any]) -> str:
    period = catalog.get("period") or catalog.get("temporal") or {}
    if isinstance(period, dict):
        return f"{period.get('start', '?')} .. {period.get('end', '?')}"
    return str(period)
