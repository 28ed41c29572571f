"""The hubs' regions: province code, cities, age and sex structure, risk and epidemic profile.

Figures are plausible, rounded shapes (older Busan, younger Gyeonggi, Gwangju between), not
official statistics: enough for hubs to differ as real regions do.
"""

from __future__ import annotations

from dataclasses import dataclass

from healthmesh.errors import ConfigError

__all__ = ["REGIONS", "Region", "region_for"]

# Age bands 0-9, 10-19, ..., 80-89 (share of the population in each band).
_YOUNG = (0.09, 0.10, 0.13, 0.15, 0.17, 0.16, 0.11, 0.06, 0.03)
_MIDDLE = (0.08, 0.10, 0.13, 0.13, 0.16, 0.16, 0.12, 0.08, 0.04)
_OLD = (0.06, 0.08, 0.11, 0.11, 0.14, 0.17, 0.16, 0.11, 0.06)


@dataclass(frozen=True)
class Region:
    hub: str
    province_code: str  # ISO 3166-2:KR
    province_name: str
    cities: tuple[tuple[str, str], ...]  # (city or district, 3-digit postal prefix)
    age_bands: tuple[float, ...]
    male_share: float
    risk_multiplier: float  # scales the onset hazards of chronic disease
    smoking_male: float
    smoking_female: float
    ili_peak_week: int  # ISO week of the usual influenza-like-illness peak
    ili_attack_rate: float  # share of people with an ILI visit in an average season


REGIONS: dict[str, Region] = {
    "gwangju": Region(
        "gwangju",
        "KR-29",
        "Gwangju",
        (("Buk-gu", "612"), ("Seo-gu", "619"), ("Nam-gu", "617"), ("Dong-gu", "614"), ("Gwangsan-gu", "622")),
        _MIDDLE,
        0.495,
        1.00,
        0.34,
        0.05,
        2,
        0.10,
    ),
    "gyeonggi": Region(
        "gyeonggi",
        "KR-41",
        "Gyeonggi-do",
        (
            ("Suwon-si", "164"),
            ("Seongnam-si", "134"),
            ("Goyang-si", "104"),
            ("Yongin-si", "170"),
            ("Bucheon-si", "146"),
        ),
        _YOUNG,
        0.502,
        0.90,
        0.32,
        0.04,
        1,
        0.12,
    ),
    "busan": Region(
        "busan",
        "KR-26",
        "Busan",
        (
            ("Haeundae-gu", "480"),
            ("Busanjin-gu", "472"),
            ("Saha-gu", "493"),
            ("Nam-gu", "485"),
            ("Dongnae-gu", "477"),
        ),
        _OLD,
        0.490,
        1.15,
        0.38,
        0.05,
        3,
        0.09,
    ),
}


def region_for(hub: str) -> Region:
    """The region of a known hub; any other hub name gets Gwangju's profile under its own name."""
    if not hub or not hub.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"hub name must be letters, digits, '-' or '_'; got {hub!r}")
    base = REGIONS.get(hub.lower(), REGIONS["gwangju"])
    return base if hub.lower() in REGIONS else Region(hub, *list(base.__dict__.values())[1:])
