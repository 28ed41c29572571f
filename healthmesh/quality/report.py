"""Check results, the quality report, and its JSON and static HTML forms.

The in-memory report keeps exact counts for the hub's own use; what is written to disk or served
passes the hub's ``Release``, since reports get shared. A fixed publication, so its counts take
label keys: a check's violating rows its own label, a denominator the label of the rows of its
table (``rows_label``, as in the catalog: the same number shows the same noise everywhere). The
share violated is computed from the released counts; a check whose violating or passing rows are
withheld shows neither (either would give the other away); the pass/fail verdict is always given.

DQD's checks (``quality.dqd``) are released the same way, each under ``dqd`` with DQD's names and
verdict. A DQD denominator's key is its definition (source, predicate, what is counted), so the
same denominator shows the same value in every check that shares it and cannot be averaged out;
one that counts every row of a table takes that table's ``rows_label``. DQD's own result file
(``dqd_document``: DQD's layout, exact counts) is the hub administrator's local file and is
written only where asked (``write_dqd``); it is not a released document.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from healthmesh.errors import PrivacyError
from healthmesh.privacy.disclosure import DEFAULT_MIN_COUNT, assert_release_safe
from healthmesh.privacy.release import Release
from healthmesh.quality.checks import Check
from healthmesh.quality.checktypes import CHECK_TYPES
from healthmesh.quality.dqd import DqdResult, overview

__all__ = ["CheckResult", "QualityReport", "rows_label"]


def rows_label(table: str) -> tuple[str, ...]:
    """The label key of a count of rows of ``table`` (shared by the catalog and the quality report)."""
    return ("rows of", table)


@dataclass(frozen=True)
class CheckResult:
    check: str
    category: str
    subcategory: str
    table: str
    field: str | None
    label: str | None
    description: str
    threshold: float
    sql: str
    violating_rows: int | None
    denominator: int | None
    status: str  # pass | fail | error | not_applicable
    error: str | None = None

    @classmethod
    def of(
        cls,
        check: str,
        table: str,
        field_name: str | None,
        threshold: float,
        sql: str,
        violating: int | None,
        denominator: int | None,
        label: str | None = None,
        error: str | None = None,
    ) -> CheckResult:
        kind = CHECK_TYPES[check]
        if error is not None:
            status = "not_applicable" if error.startswith("not applicable") else "error"
        elif not denominator:
            status = "pass"
        else:
            status = "fail" if 100.0 * (violating or 0) / denominator > threshold else "pass"
        return cls(
            check,
            kind.category,
            kind.subcategory,
            table,
            field_name,
            label,
            kind.description,
            threshold,
            sql,
            violating,
            denominator,
            status,
            error,
        )

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "error")

    @property
    def verdict(self) -> str:
        """PASS, FAIL, NOT_APPLICABLE or ERROR (DQD's words)."""
        return {"pass": "PASS", "fail": "FAIL", "not_applicable": "NOT_APPLICABLE"}.get(self.status, "ERROR")

    @property
    def pct_violated(self) -> float | None:
        if not self.denominator or self.violating_rows is None:
            return None
        return round(100.0 * self.violating_rows / self.denominator, 4)

    def released(self, release: Release) -> dict[str, Any]:
        """The result as it may leave the hub (counts through ``release``)."""
        violating, denominator, pct = self.violating_rows, self.denominator, self.pct_violated
        if denominator is not None and violating is not None:
            shown_denominator = release.count(denominator, release.label_key(*rows_label(self.table)))
            where = (self.check, self.table, self.field, self.label)
            shown_violating = release.count(violating, release.label_key("quality violating", *where))
            passing = release.count(denominator - violating, release.label_key("quality passing", *where))
            denominator = shown_denominator
            if shown_denominator is None or shown_violating is None or passing is None:
                violating = pct = None
            else:
                violating = shown_violating
                pct = round(100.0 * min(1.0, shown_violating / shown_denominator), 4)
        return {
            "check": self.check,
            "category": self.category,
            "subcategory": self.subcategory,
            "table": self.table,
            "field": self.field,
            "label": self.label,
            "description": self.description,
            "threshold": self.threshold,
            "violating_rows": violating,
            "denominator": denominator,
            "pct_violated": pct,
            "failed": self.failed,
            "status": self.status,
            "error": self.error,
            "sql": self.sql,
        }


@dataclass
class QualityReport:
    results: list[CheckResult]
    duration_s: float
    release: Release | None = None  # needed to release the report (to_dict, write)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    dqd: list[DqdResult] = field(default_factory=list)  # DQD's checks with DQD's verdicts
    dqd_checks: dict[int, Check] = field(default_factory=dict)  # index in ``dqd`` -> the check counted
    dqd_started: datetime = field(default_factory=datetime.now)
    dqd_metadata: list[dict[str, Any]] = field(default_factory=list)  # DQD's Metadata (CDM_SOURCE rows)
    dqd_finished: datetime = field(default_factory=datetime.now)

    @property
    def min_count(self) -> int:
        return self.release.min_count if self.release is not None else DEFAULT_MIN_COUNT

    def _release(self) -> Release:
        if self.release is None:
            raise PrivacyError(
                "a quality report leaves the hub only through the hub's Release; pass release="
            )
        return self.release

    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.failed]

    def summary(self) -> dict[str, Any]:
        """Checks run, passed and failed per category (counts of checks, not of persons)."""
        by_category: dict[str, dict[str, int]] = {}
        for r in self.results:
            if r.status == "not_applicable":
                continue
            cell = by_category.setdefault(
                r.category, {"checks_run": 0, "checks_passed": 0, "checks_failed": 0}
            )
            cell["checks_run"] += 1
            cell["checks_failed" if r.failed else "checks_passed"] += 1
        run = sum(c["checks_run"] for c in by_category.values())
        passed = sum(c["checks_passed"] for c in by_category.values())
        return {
            "checks_run": run,
            "checks_passed": passed,
            "checks_failed": run - passed,
            "pct_passed": round(100.0 * passed / run, 2) if run else None,
            "check_types": len({r.check for r in self.results}),
            "by_category": by_category,
        }

    def dqd_overview(self) -> dict[str, Any]:
        """DQD's Overview of its checks (counts of checks, not of persons)."""
        return overview(self.dqd)

    def dqd_document(self) -> dict[str, Any]:
        """DQD's result JSON (``startTimestamp`` ... ``Overview``), exact counts: stays on the hub."""
        seconds = (self.dqd_finished - self.dqd_started).total_seconds()
        return {
            "startTimestamp": self.dqd_started.strftime("%Y-%m-%d %H:%M:%S"),
            "endTimestamp": self.dqd_finished.strftime("%Y-%m-%d %H:%M:%S"),
            "executionTime": f"{seconds:.0f} secs",
            "CheckResults": [r.dqd_row() for r in self.dqd],
            "Metadata": self.dqd_metadata,
            "Overview": self.dqd_overview(),
        }

    def write_dqd(self, path: str | Path) -> Path:
        """Write DQD's result file (DQD's viewer reads it): the hub administrator's local copy."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.dqd_document(), indent=1, default=str), encoding="utf-8")
        return target

    def _released_dqd(self, release: Release) -> list[dict[str, Any]]:
        out = []
        for i, r in enumerate(self.dqd):
            violating: int | None = r.violating
            denominator: int | None = r.denominator
            pct: float | None = None
            check = self.dqd_checks.get(i)
            if violating is not None and denominator is not None:
                key = release.label_key(*_denominator_label(check, r))
                shown_denominator = release.count(denominator, key)
                shown_violating = release.count(
                    violating, release.label_key("dqd violating", r.spec.check_id)
                )
                passing = release.count(
                    denominator - violating, release.label_key("dqd passing", r.spec.check_id)
                )
                denominator = shown_denominator
                if shown_denominator is None or shown_violating is None or passing is None:
                    violating = None
                else:
                    violating = shown_violating
                    pct = round(100.0 * min(1.0, shown_violating / shown_denominator), 4)
            out.append(
                {
                    "checkId": r.spec.check_id,
                    "checkName": r.spec.name,
                    "checkLevel": r.spec.level,
                    "cdmTableName": r.spec.table,
                    "cdmFieldName": r.spec.field,
                    "conceptId": r.spec.concept_id,
                    "unitConceptId": r.spec.unit_concept_id,
                    "category": r.spec.kind.category,
                    "subcategory": r.spec.kind.subcategory or None,
                    "context": r.spec.kind.context,
                    "thresholdValue": r.spec.threshold,
                    "status": r.status,
                    "notApplicableReason": r.not_applicable_reason,
                    "error": r.error,
                    "violating_rows": violating,
                    "denominator": denominator,
                    "pct_violated": pct,
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        release = self._release()
        document: dict[str, Any] = {
            "created": self.created,
            "duration_s": round(self.duration_s, 3),
            "min_count": self.min_count,
            "summary": self.summary(),
            "checks": [r.released(release) for r in self.results],
        }
        if self.dqd:
            document["dqd"] = {
                "version": "DataQualityDashboard 2.8.4 check definitions, CDM v5.4",
                "overview": self.dqd_overview(),
                "checks": self._released_dqd(release),
            }
        assert_release_safe(document, self.min_count)
        return document

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        document = self.to_dict()
        json_path = out / "quality.json"
        json_path.write_text(json.dumps(document, indent=2), encoding="utf-8")
        html_path = out / "quality.html"
        html_path.write_text(_html(document), encoding="utf-8")
        return json_path, html_path


def _denominator_label(check: Check | None, result: DqdResult) -> tuple[str, ...]:
    """The cell key of a DQD denominator: its definition; all rows of a table share ``rows_label``."""
    if check is None:  # cdmTable / cdmField: a denominator of 1 table or field
        return ("dqd structural", result.spec.check_id)
    if check.denominator == "TRUE" and check.counted == "*" and check.base_table is not None:
        return rows_label(check.base_table)
    return ("dqd denominator", check.source, check.denominator, check.counted, *check.joins)


def _cell(value: object) -> str:
    return "&lt;min" if value is None else html.escape(str(value))


def _html(document: dict[str, Any]) -> str:
    summary = document["summary"]
    rows = []
    for c in sorted(document["checks"], key=lambda c: (not c["failed"], c["category"], c["check"])):
        if c["status"] == "not_applicable":
            continue
        css = "fail" if c["failed"] else "pass"
        target = (
            c["table"] + (f".{c['field']}" if c["field"] else "") + (f" [{c['label']}]" if c["label"] else "")
        )
        rows.append(
            f"<tr class='{css}'><td>{c['status']}</td><td>{c['category']}</td><td>{c['check']}</td>"
            f"<td>{html.escape(target)}</td><td>{c['threshold']}</td>"
            f"<td>{'' if c['violating_rows'] is None and c['denominator'] is None else _cell(c['violating_rows'])}</td>"
            f"<td>{_cell(c['denominator'])}</td><td>{'' if c['pct_violated'] is None else c['pct_violated']}</td>"
            f"<td><details><summary>SQL</summary><code>{html.escape(c['sql'])}</code></details>"
            f"{html.escape(c['error'] or '')}</td></tr>"
        )
    categories = "".join(
        f"<tr><td>{k}</td><td>{v['checks_run']}</td><td>{v['checks_passed']}</td><td>{v['checks_failed']}</td></tr>"
        for k, v in summary["by_category"].items()
    )
    dqd = _dqd_html(document.get("dqd"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>healthmesh data quality</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; }}
tr.fail td:first-child {{ background: #f8d7da; }} tr.pass td:first-child {{ background: #d4edda; }}
code {{ white-space: pre-wrap; font-size: 0.8em; }}
</style></head><body>
<h1>Data quality report</h1>
<p>Created {document["created"]} in {document["duration_s"]} s. {summary["checks_run"]} checks of
{summary["check_types"]} types: {summary["checks_passed"]} passed, {summary["checks_failed"]} failed
({summary["pct_passed"]}% passed). Row counts below {document["min_count"]} are shown as &lt;min.</p>
<table><tr><th>category</th><th>run</th><th>passed</th><th>failed</th></tr>{categories}</table>
<h2>Checks</h2>
<table><tr><th>status</th><th>category</th><th>check</th><th>target</th><th>threshold %</th>
<th>violating rows</th><th>denominator</th><th>% violated</th><th>SQL</th></tr>
{"".join(rows)}
</table>{dqd}</body></html>
"""


def _dqd_html(dqd: dict[str, Any] | None) -> str:
    """DQD's overview and its checks that did not pass (failed or in error)."""
    if not dqd:
        return ""
    o = dqd["overview"]
    rows = []
    for c in dqd["checks"]:
        if c["status"] not in ("FAIL", "ERROR"):
            continue
        target = ".".join(p for p in (c["cdmTableName"], c["cdmFieldName"], c["conceptId"]) if p)
        shown = "" if c["violating_rows"] is None and c["denominator"] is None else _cell(c["violating_rows"])
        rows.append(
            f"<tr class='fail'><td>{c['status']}</td><td>{c['category']}</td><td>{c['checkName']}</td>"
            f"<td>{html.escape(target)}</td><td>{c['thresholdValue']}</td><td>{shown}</td>"
            f"<td>{_cell(c['denominator'])}</td><td>{'' if c['pct_violated'] is None else c['pct_violated']}</td>"
            f"<td>{html.escape(c['error'] or '')}</td></tr>"
        )
    return f"""
<h2>OHDSI Data Quality Dashboard checks</h2>
<p>{html.escape(dqd["version"])}: {o["countTotal"]} checks; {o["countStrictlyPassed"]} passed,
{o["countThresholdFailed"]} failed, {o["countNotApplicable"]} not applicable, {o["countIsError"]} in error.</p>
<table><tr><th>status</th><th>category</th><th>check</th><th>target</th><th>threshold %</th>
<th>violating rows</th><th>denominator</th><th>% violated</th><th>error</th></tr>
{"".join(rows)}
</table>"""
