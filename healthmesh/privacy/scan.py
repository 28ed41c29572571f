"""Direct-identifier scan of a hub's text columns and of export files.

Regular expressions plus validation, offline: e-mail, phone numbers (Korean and North American),
US SSN (area/group/serial rules), Korean resident registration numbers (birth date and the
weighted mod-11 checksum), payment cards (Luhn), street addresses (English and Korean road-name
form), and person names (title + name, or a given name and a surname both in the bundled list;
three-syllable Hangul names starting with a common surname). Presidio was not used: its analyzer
needs a spaCy model that would have to be downloaded.

Findings carry a masked excerpt only, never the identifier itself.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from healthmesh.cdm.database import HubDatabase
from healthmesh.cdm.vocabulary import VOCABULARY_TABLES
from healthmesh.errors import PrivacyError

__all__ = [
    "ENTITIES",
    "IDENTIFIER_MACROS",
    "INGEST_ANY",
    "Finding",
    "ScanReport",
    "identifier_kind",
    "kr_rrn_valid",
    "scan_database",
    "scan_file",
    "scan_text",
    "write_report",
]

ENTITIES = ("CREDIT_CARD", "EMAIL", "KR_RRN", "PERSON_NAME", "PHONE", "STREET_ADDRESS", "US_SSN")

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
_PHONE = re.compile(
    r"(?<![\w-])(?:\+82[- ]?(?:10|[2-6]\d?)[- ]?\d{3,4}[- ]?\d{4}"  # +82 10-1234-5678
    r"|01[016789]-\d{3,4}-\d{4}"  # Korean mobile
    r"|0(?:2|[3-6][1-5])-\d{3,4}-\d{4}"  # Korean landline
    r"|(?:\+1[-. ]?)?\(?\d{3}\)?[-. ]\d{3}[-. ]\d{4})(?![\w-])"  # North American
)
_SSN = re.compile(r"(?<![\w-])(\d{3})-(\d{2})-(\d{4})(?![\w-])")
_RRN = re.compile(r"(?<![\w-])(\d{6})-?([1-8]\d{6})(?![\w-])")
_CARD = re.compile(r"(?<![\w-])(?:\d{4}[- ]){3}\d{1,7}(?![\w-])")
_ADDRESS = re.compile(
    r"\b\d{1,5}\s+(?:[A-Z][A-Za-z]+\.?\s+){1,4}"
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Way|Court|Ct|Place|Pl|Terrace|Circle)\b\.?"
    r"|[가-힣\d]+(?:로|길)\s?\d{1,4}(?:-\d{1,4})?(?:번길\s?\d{1,4})?"
)
_TITLED = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+[A-Z][a-zà-ÿ]+\d*(?:\s+[A-Z][a-zà-ÿ]+\d*)?")
_CAPITALISED = re.compile(r"\b([A-ZÀ-Ý][a-zà-ÿ]+)\d*\b")
_HANGUL_NAME = re.compile(
    r"(?<![가-힣])[김이박최정강조윤장임한오서신권황안송전홍유고문양손배백허남심노하곽성차주우구민류나진지엄채원천방공현][가-힣]{2}(?![가-힣])"
)


@dataclass(frozen=True)
class Finding:
    entity: str
    excerpt: str  # masked
    confidence: str  # high | medium | low


@dataclass
class ScanReport:
    source: str
    findings: dict[str, dict[str, int]] = field(default_factory=dict)  # location -> entity -> matches
    examples: dict[str, list[str]] = field(default_factory=dict)  # location -> masked excerpts
    scanned_values: int = 0

    @property
    def total(self) -> int:
        return sum(sum(v.values()) for v in self.findings.values())

    def add(self, location: str, found: Iterable[Finding]) -> None:
        for f in found:
            cell = self.findings.setdefault(location, {})
            cell[f.entity] = cell.get(f.entity, 0) + 1
            examples = self.examples.setdefault(location, [])
            if len(examples) < 3 and f.excerpt not in examples:
                examples.append(f.excerpt)

    def to_dict(self) -> dict[str, Any]:
        by_entity: Counter[str] = Counter()
        for cell in self.findings.values():
            by_entity.update(cell)
        return {
            "source": self.source,
            "scanned_values": self.scanned_values,
            "total_matches": self.total,
            "by_entity": dict(sorted(by_entity.items())),
            "locations": [
                {
                    "location": loc,
                    "matches": dict(sorted(cell.items())),
                    "examples": self.examples.get(loc, []),
                }
                for loc, cell in sorted(self.findings.items())
            ],
        }


@cache
def _names() -> tuple[frozenset[str], frozenset[str]]:
    text = resources.files("healthmesh.privacy").joinpath("data/names.txt").read_text(encoding="utf-8")
    sections: dict[str, set[str]] = {"given": set(), "surname": set()}
    current = "given"
    for line in text.splitlines():
        line = line.strip().lower()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            continue
        sections[current].add(line)
    return frozenset(sections["given"]), frozenset(sections["surname"])


def _mask(value: str) -> str:
    """Keep the first character and the shape; hide the rest."""
    if len(value) <= 2:
        return "*" * len(value)
    return value[0] + re.sub(r"[^\s@.\-]", "*", value[1:-1]) + value[-1]


def kr_rrn_valid(front: str, back: str) -> bool:
    """A resident registration number with a real birth date and a correct check digit.

    Numbers issued from October 2020 have a random tail without the check digit; those are
    reported with medium confidence by ``scan_text`` when written with the hyphen.
    """
    return _rrn_date_ok(front, back) and _rrn_checksum_ok(front + back)


def _rrn_date_ok(front: str, back: str) -> bool:
    century = {"1": 1900, "2": 1900, "5": 1900, "6": 1900, "3": 2000, "4": 2000, "7": 2000, "8": 2000}
    if back[0] not in century:
        return False
    try:
        date(century[back[0]] + int(front[:2]), int(front[2:4]), int(front[4:6]))
    except ValueError:
        return False
    return True


def _rrn_checksum_ok(digits: str) -> bool:
    weights = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
    total = sum(int(d) * w for d, w in zip(digits[:12], weights, strict=True))
    return (11 - total % 11) % 10 == int(digits[12])


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _ssn_confidence(area: str, group: str, serial: str) -> str | None:
    if area in ("000", "666") or group == "00" or serial == "0000":
        return None
    return "medium" if area.startswith("9") else "high"  # 9xx: never issued, used by test data (Synthea)


def _iter_findings(text: str) -> Iterator[Finding]:
    for m in _EMAIL.finditer(text):
        yield Finding("EMAIL", _mask(m.group()), "high")
    for m in _RRN.finditer(text):
        front, back = m.group(1), m.group(2)
        if kr_rrn_valid(front, back):
            yield Finding("KR_RRN", _mask(m.group()), "high")
        elif "-" in m.group() and _rrn_date_ok(front, back):
            yield Finding("KR_RRN", _mask(m.group()), "medium")
    for m in _SSN.finditer(text):
        confidence = _ssn_confidence(*m.groups())
        if confidence:
            yield Finding("US_SSN", _mask(m.group()), confidence)
    for m in _PHONE.finditer(text):
        if not _SSN.fullmatch(m.group()):
            yield Finding("PHONE", _mask(m.group()), "high")
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and digits[0] in "3456" and _luhn_ok(digits):
            yield Finding("CREDIT_CARD", _mask(m.group()), "high")
    for m in _ADDRESS.finditer(text):
        yield Finding("STREET_ADDRESS", _mask(m.group()), "medium")
    yield from _name_findings(text)


def _name_findings(text: str) -> Iterator[Finding]:
    given, surnames = _names()
    spans: list[tuple[int, int]] = []
    for m in _TITLED.finditer(text):
        spans.append(m.span())
        yield Finding("PERSON_NAME", _mask(m.group()), "high")
    words = list(_CAPITALISED.finditer(text))
    used = -1
    for i, first in enumerate(words):
        if first.start() <= used or any(s <= first.start() < e for s, e in spans):
            continue
        # "Given Surname" or "Given Middle Surname", the words separated by spaces only.
        for j in (i + 1, i + 2):
            if j >= len(words) or text[words[j - 1].end() : words[j].start()].strip():
                break
            if first.group(1).lower() in given and words[j].group(1).lower() in surnames:
                used = words[j].end()
                yield Finding("PERSON_NAME", _mask(text[first.start() : used]), "high")
                break
    for m in _HANGUL_NAME.finditer(text):
        yield Finding("PERSON_NAME", _mask(m.group()), "low")


_NAME_CONTEXT = re.compile(r"(?:^|_)(?:provider|patient|person|contact|physician|doctor)?_?name$|^name$")
_NAME_SHAPE = re.compile(r"^(?:[A-ZÀ-Ý][a-zà-ÿ'-]+\d*\.?\s+){1,3}[A-ZÀ-Ý][a-zà-ÿ'-]+\d*$")
_NOT_PERSON = frozenset(
    {
        "hospital",
        "clinic",
        "center",
        "centre",
        "medical",
        "practice",
        "health",
        "care",
        "university",
        "inc",
        "llc",
    }
)


def scan_text(text: str, context: str | None = None) -> list[Finding]:
    """Every identifier found in ``text``; ``context`` is the column name, when there is one.

    In a column named like a person's name (``provider_name``...), a value shaped like a name is
    a name even when its parts are not in the list (context words, as in Presidio).
    """
    if not text:
        return []
    found = list(_iter_findings(text))
    if (
        context
        and not any(f.entity == "PERSON_NAME" for f in found)
        and _NAME_CONTEXT.search(context.lower())
        and _NAME_SHAPE.match(text.strip())
        and not _NOT_PERSON & {w.strip(".").lower() for w in text.split()}
    ):
        found.append(Finding("PERSON_NAME", _mask(text.strip()), "medium"))
    return found


# A cheap SQL pre-filter: only values with an @, a run of digits with separators, a capitalised
# word pair or Hangul go to the Python validators.
_PREFILTER = r"@|\d[- .]\d|\d{6}-?\d{7}|[A-Z][a-z]+\d*\s+[A-Z]|[가-힣]|\d\s+[A-Z][a-z]+"


def scan_database(
    db: HubDatabase, tables: Iterable[str] | None = None, max_values_per_column: int = 200_000
) -> ScanReport:
    """Scan every text column of the hub's tables (vocabulary tables excluded)."""
    present = db.tables()
    chosen = sorted(
        set(tables) if tables is not None else present - set(VOCABULARY_TABLES) - {"hm_concept_map"}
    )
    unknown = [t for t in chosen if t not in present]
    if unknown:
        raise PrivacyError(f"tables {unknown} are not in the hub; it has {sorted(present)}")
    report = ScanReport(source=str(db.path))
    columns = db.rows(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'main' AND data_type = 'VARCHAR' ORDER BY 1, 2"
    )
    for table, column in columns:
        if table not in chosen:
            continue
        values = db.rows(
            f'SELECT "{column}" FROM "{table}" WHERE regexp_matches("{column}", ?) LIMIT {int(max_values_per_column)}',
            [_PREFILTER],
        )
        report.scanned_values += len(values)
        for (value,) in values:
            report.add(f"{table}.{column}", scan_text(str(value), context=str(column)))
    return report


def scan_file(path: str | Path) -> ScanReport:
    """Scan an export file line by line (CSV, TSV, NDJSON, JSON or plain text)."""
    target = Path(path)
    if not target.is_file():
        raise PrivacyError(f"no file at {target}; pass an export file or --db for a hub")
    report = ScanReport(source=str(target))
    with target.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            report.scanned_values += 1
            found = scan_text(line)
            if found:
                report.add(target.name, found)
    return report


def write_report(report: ScanReport, path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    return target


# --- Identifiers stopped at ingest --------------------------------------------------------------
# The detectors a field value is checked with before it is stored: identifiers that name a person
# by themselves (numbers, contact points, a titled name). Street addresses and bare names are left
# to the database scan: in clinical free text they match too often ("경구로 1회", "Grace Period").
# Each pattern is written for RE2 (DuckDB's regexp_*: no look-around, so boundaries are consumed
# characters) and reads the same in Python's ``re`` with ASCII classes: the SQL mapping and the
# in-memory twin (``identifier_kind``) apply one rule. Checksums (RRN, Luhn) and the SSN's
# never-issued parts are checked in SQL macros (``IDENTIFIER_MACROS``) and in Python alike.
_LEFT = r"(?:^|[^\w-])"
_RIGHT = r"(?:[^\w-]|$)"
_KR_MOBILE = r"(?:\+82[- .]?0?|0)1[016789][- .]?\d{3,4}[- .]?\d{4}"  # 010-1234-5678, 01012345678, +82 10...
_KR_LANDLINE = (
    r"(?:\+82[- .]?|0)(?:2|[3-6][1-5]|70)[- .]\d{3,4}[- .]\d{4}"  # 02-123-4567, 031.123.4567
    r"|\(0(?:2|[3-6][1-5]|70)\) ?\d{3,4}[- .]?\d{4}"  # (02) 123-4567
)
_NORTH_AMERICAN = r"(?:\+1[-. ]?)?\(?\d{3}\)?[-. ]\d{3}[-. ]\d{4}"
INGEST_PATTERNS: dict[str, str] = {
    "EMAIL": r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}",
    "KR_RRN": _LEFT + r"\d{6}-?[1-8]\d{6}" + _RIGHT,
    "US_SSN": _LEFT + r"\d{3}-\d{2}-\d{4}" + _RIGHT,
    "CREDIT_CARD": _LEFT + r"(?:\d{4}[- ]){3}\d{1,7}" + _RIGHT,
    "PHONE": _LEFT + f"(?:{_KR_MOBILE}|{_KR_LANDLINE}|{_NORTH_AMERICAN})" + _RIGHT,
    "PERSON_NAME": r"\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?[ \t]+[A-Z][a-z]+",
}
# Any of them, unchecked: one regexp per record decides whether its fields are looked at closer.
INGEST_ANY = "|".join(f"(?:{p})" for p in INGEST_PATTERNS.values())


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# SQL macros (DuckDB): the checks behind each pattern, over the digits of one match.
IDENTIFIER_MACROS = f"""
CREATE OR REPLACE TEMP MACRO hm_digits(m) AS regexp_replace(m, '[^0-9]', '', 'g');
CREATE OR REPLACE TEMP MACRO hm_rrn_ok(m) AS (
    try_cast(CASE WHEN substr(hm_digits(m), 7, 1) IN ('1', '2', '5', '6') THEN '19' ELSE '20' END
             || substr(hm_digits(m), 1, 2) || '-' || substr(hm_digits(m), 3, 2) || '-'
             || substr(hm_digits(m), 5, 2) AS DATE) IS NOT NULL
    AND (contains(m, '-') OR (11 - list_sum(list_transform(range(12), lambda i:
            substr(hm_digits(m), i + 1, 1)::INTEGER * [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5][i + 1])) % 11) % 10
        = substr(hm_digits(m), 13, 1)::INTEGER));
CREATE OR REPLACE TEMP MACRO hm_ssn_ok(m) AS
    substr(hm_digits(m), 1, 3) NOT IN ('000', '666') AND substr(hm_digits(m), 4, 2) <> '00'
    AND substr(hm_digits(m), 6, 4) <> '0000';
CREATE OR REPLACE TEMP MACRO hm_luhn_ok(m) AS
    length(hm_digits(m)) BETWEEN 13 AND 19 AND substr(hm_digits(m), 1, 1) IN ('3', '4', '5', '6')
    AND list_sum(list_transform(range(length(hm_digits(m))), lambda i:
        CASE WHEN i % 2 = 0 THEN substr(hm_digits(m), length(hm_digits(m)) - i, 1)::INTEGER
             ELSE [0, 2, 4, 6, 8, 1, 3, 5, 7, 9][substr(hm_digits(m), length(hm_digits(m)) - i, 1)::INTEGER + 1]
        END)) % 10 = 0;
CREATE OR REPLACE TEMP MACRO hm_identifier_kind(x) AS CASE
    WHEN x IS NULL THEN NULL
    WHEN regexp_matches(x, {_sql_literal(INGEST_PATTERNS["EMAIL"])}) THEN 'EMAIL'
    WHEN list_contains(list_transform(regexp_extract_all(x, {_sql_literal(INGEST_PATTERNS["KR_RRN"])}),
                                      lambda m: hm_rrn_ok(m)), true) THEN 'KR_RRN'
    WHEN list_contains(list_transform(regexp_extract_all(x, {_sql_literal(INGEST_PATTERNS["US_SSN"])}),
                                      lambda m: hm_ssn_ok(m)), true) THEN 'US_SSN'
    WHEN list_contains(list_transform(regexp_extract_all(x, {_sql_literal(INGEST_PATTERNS["CREDIT_CARD"])}),
                                      lambda m: hm_luhn_ok(m)), true) THEN 'CREDIT_CARD'
    WHEN regexp_matches(x, {_sql_literal(INGEST_PATTERNS["PHONE"])}) THEN 'PHONE'
    WHEN regexp_matches(x, {_sql_literal(INGEST_PATTERNS["PERSON_NAME"])}) THEN 'PERSON_NAME'
END;
"""


_INGEST_RE = {kind: re.compile(pattern, re.ASCII) for kind, pattern in INGEST_PATTERNS.items()}
_INGEST_CHECKS = {
    "KR_RRN": lambda m: (
        _rrn_date_ok(_digits(m)[:6], _digits(m)[6:]) and ("-" in m or _rrn_checksum_ok(_digits(m)))
    ),
    "US_SSN": lambda m: _ssn_confidence(_digits(m)[:3], _digits(m)[3:5], _digits(m)[5:]) is not None,
    "CREDIT_CARD": lambda m: 13 <= len(_digits(m)) <= 19 and _digits(m)[0] in "3456" and _luhn_ok(_digits(m)),
}


def _digits(text: str) -> str:
    return re.sub(r"[^0-9]", "", text)


def identifier_kind(value: str | None) -> str | None:
    """The kind of identifier ``value`` holds, as ingest decides it (``hm_identifier_kind`` in SQL), or None."""
    if not value:
        return None
    for kind, pattern in _INGEST_RE.items():
        check = _INGEST_CHECKS.get(kind)
        if check is None:
            if pattern.search(value):
                return kind
        elif any(check(m.group()) for m in pattern.finditer(value)):
            return kind
    return None
