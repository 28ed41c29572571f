"""A regional synthetic population whose risk factors drive disease onset, written as FHIR R4.

Each person is simulated year by year from 2014 to 2025: yearly check-ups with vital signs and
laboratory results (LOINC), screening and acute procedures (SNOMED CT), onset of type 2 diabetes, hypertension, myocardial infarction, stroke
and chronic kidney disease from hazards that rise with age, BMI, glucose, blood pressure, LDL and
smoking (SNOMED CT), treatment after diagnosis (RxNorm), deaths, and influenza-like-illness visits
that follow a seasonal curve per region. People are generated in chunks with their own seeded
random stream, so the output is the same for a seed whatever the chunk size of the run.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta

from healthmesh.ingest.synth.regions import Region

__all__ = ["END_YEAR", "START_YEAR", "PersonRecords", "simulate_person"]

START_YEAR = 2014
END_YEAR = 2025
_NS = uuid.UUID("6f1c3e7a-2b4d-4c55-9a0e-5d7e8f901234")

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOCAL = "https://healthmesh.dev/fhir/CodeSystem/local"

_FAMILY = (
    "Kim",
    "Lee",
    "Park",
    "Choi",
    "Jung",
    "Kang",
    "Cho",
    "Yoon",
    "Jang",
    "Lim",
    "Han",
    "Oh",
    "Seo",
    "Shin",
)
_GIVEN_M = (
    "Minjun",
    "Seojun",
    "Dohyun",
    "Jiho",
    "Hyunwoo",
    "Junseo",
    "Sungmin",
    "Jaehyun",
    "Youngho",
    "Dongwook",
)
_GIVEN_F = ("Seoyeon", "Jiwoo", "Hayoon", "Minseo", "Soyeon", "Jiyoung", "Eunji", "Hyejin", "Sumin", "Yuna")
_STREETS = ("Jungang-ro", "Sangmu-daero", "Haeun-daero", "Gyeongsu-daero", "Dongseo-ro", "Chungjang-ro")

VITALS = (("8480-6", "Systolic blood pressure"), ("8462-4", "Diastolic blood pressure"))


@dataclass
class PersonRecords:
    lines: dict[str, list[str]] = field(default_factory=dict)

    def add(self, resource_type: str, line: str) -> None:
        self.lines.setdefault(resource_type, []).append(line)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _rrn(birth: date, male: bool, rng: random.Random) -> str:
    """A synthetic Korean resident registration number with a valid check digit."""
    century_digit = (1 if male else 2) if birth.year < 2000 else (3 if male else 4)
    digits = f"{birth:%y%m%d}{century_digit}{rng.randrange(100000):05d}"
    weights = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
    check = (11 - sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11) % 10
    return f"{digits[:6]}-{digits[6:]}{check}"


def _ts(day: date, hour: int = 9) -> str:
    return f"{day.isoformat()}T{hour:02d}:00:00+09:00"


def _random_day(rng: random.Random, year: int) -> date:
    return date(year, 1, 1) + timedelta(days=rng.randrange(365))


class _Person:
    """Mutable simulation state of one person."""

    def __init__(self, region: Region, index: int, seed: int, rng: random.Random) -> None:
        self.pid = str(uuid.uuid5(_NS, f"{region.hub}/{seed}/{index}"))
        self.short = f"{region.hub[:3]}{seed}-{index}"
        self.male = rng.random() < region.male_share
        band = rng.choices(range(len(region.age_bands)), weights=region.age_bands)[0]
        age_at_end = band * 10 + rng.randrange(10)
        self.birth = date(END_YEAR - age_at_end, 1, 1) + timedelta(days=rng.randrange(365))
        self.city, self.postal = region.cities[rng.randrange(len(region.cities))]
        self.smoker = rng.random() < (region.smoking_male if self.male else region.smoking_female)
        self.bmi = 23.0 + rng.gauss(0, 3.2) + (0.6 if self.male else -0.4)
        self.sbp_offset = rng.gauss(0, 10)
        self.glu_offset = rng.gauss(0, 7)
        self.ldl = 105 + rng.gauss(0, 28)
        self.egfr_offset = rng.gauss(0, 8)
        self.conditions: dict[str, date] = {}
        self.deceased: date | None = None
        self.last_event = self.birth
        self.counter = 0

    def next_id(self, kind: str) -> str:
        self.counter += 1
        return f"{self.short}-{kind}{self.counter}"

    def age(self, on: date) -> int:
        return on.year - self.birth.year - ((on.month, on.day) < (self.birth.month, self.birth.day))

    def vitals(self, age: int) -> dict[str, float]:
        dm, htn, ckd = "t2dm" in self.conditions, "htn" in self.conditions, "ckd" in self.conditions
        sbp = (
            104
            + 0.45 * max(age - 20, 0)
            + 1.1 * (self.bmi - 23)
            + self.sbp_offset
            + (6 if self.smoker else 0)
        )
        sbp -= 12 if htn else 0
        glu = 86 + 0.3 * max(age - 30, 0) + 1.6 * (self.bmi - 23) + self.glu_offset + (48 if dm else 0)
        egfr = (
            118 - 0.85 * age + self.egfr_offset - (12 if dm else 0) - (8 if htn else 0) - (15 if ckd else 0)
        )
        return {
            "sbp": sbp,
            "dbp": 0.55 * sbp + 8,
            "bmi": self.bmi,
            "glucose": glu,
            "hba1c": 4.6 + 0.018 * glu,
            "ldl": self.ldl - (35 if "ihd" in self.conditions else 0),
            "chol": self.ldl + 70,
            "egfr": max(egfr, 8.0),
        }


def _hazards(p: _Person, age: int, v: dict[str, float], mult: float) -> dict[str, float]:
    male, smoke = float(p.male), float(p.smoker)
    dm, htn = float("t2dm" in p.conditions), float("htn" in p.conditions)
    return {
        "t2dm": mult
        * _sigmoid(-6.9 + 0.035 * age + 0.25 * (v["bmi"] - 23) + 0.12 * (v["glucose"] - 95) + 0.3 * smoke),
        "htn": mult * _sigmoid(-4.9 + 0.075 * (v["sbp"] - 120) + 0.02 * age),
        "ihd": mult
        * _sigmoid(
            -10.9
            + 0.075 * age
            + 0.8 * male
            + 0.7 * smoke
            + 0.015 * (v["ldl"] - 110)
            + 0.02 * (v["sbp"] - 120)
            + 0.6 * dm
        ),
        "stroke": mult
        * _sigmoid(-10.9 + 0.08 * age + 0.025 * (v["sbp"] - 120) + 0.5 * smoke + 0.5 * dm + 0.4 * htn),
        "ckd": mult * _sigmoid(-8.0 + 0.03 * age + 1.1 * dm + 0.7 * htn - 0.06 * (v["egfr"] - 90)),
    }


_CONDITION_CODES = {
    "t2dm": ("44054006", "Diabetes mellitus type 2"),
    "htn": ("59621000", "Essential hypertension"),
    "ihd": ("22298006", "Myocardial infarction"),
    "stroke": ("230690007", "Cerebrovascular accident"),
}
# Procedures (SNOMED CT, standard in the bundled vocabulary): an ECG at a check-up every fourth
# year from 40, a medication review every third year of treatment, and the acute care of an
# infarction or a stroke. Chosen by the calendar and the person's state, not drawn: the rest of the
# population is the same as without them.
ECG = ("29303009", "Electrocardiographic procedure")
MEDICATION_REVIEW = ("430193006", "Medication reconciliation")
_ACUTE_PROCEDURES = {
    "ihd": ("415070008", "Percutaneous coronary intervention"),
    "stroke": ("303653007", "CT of head"),
}
# eGFR by MDRD, the form of the code that is standard in OMOP (LOINC 33914-3 maps to it).
EGFR = ("77147-7", "Glomerular filtration rate/1.73 sq M.predicted by Creatinine-based formula (MDRD)")
_DRUGS = {
    "t2dm": (("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet"),),
    "htn": (("314076", "lisinopril 10 MG Oral Tablet"), ("197361", "amlodipine 5 MG Oral Tablet")),
    "ihd": (("259255", "atorvastatin 80 MG Oral Tablet"),),
    "stroke": (("259255", "atorvastatin 80 MG Oral Tablet"),),
}


def _encounter(
    p: _Person, out: PersonRecords, day: date, klass: str, code: str, display: str, site: str, doc: str
) -> str:
    eid = p.next_id("e")
    days = 5 if klass == "IMP" else 0
    p.last_event = max(p.last_event, day + timedelta(days=days))
    out.add(
        "Encounter",
        f'{{"resourceType":"Encounter","id":"{eid}","status":"finished","class":{{"system":'
        f'"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"{klass}"}},"type":[{{"coding":[{{"system":'
        f'"{SNOMED}","code":"{code}","display":"{display}"}}]}}],"subject":{{"reference":"Patient/{p.pid}"}},'
        f'"participant":[{{"individual":{{"reference":"Practitioner/{doc}"}}}}],"period":{{"start":"{_ts(day)}",'
        f'"end":"{_ts(day + timedelta(days=days), 10)}"}},"serviceProvider":{{"reference":"Organization/{site}"}}}}',
    )
    return eid


def _observation(
    p: _Person,
    out: PersonRecords,
    eid: str,
    day: date,
    code: str,
    display: str,
    category: str,
    value: float,
    unit: str,
) -> None:
    out.add(
        "Observation",
        f'{{"resourceType":"Observation","id":"{p.next_id("o")}","status":"final","category":[{{"coding":[{{"system":'
        f'"http://terminology.hl7.org/CodeSystem/observation-category","code":"{category}"}}]}}],"code":{{"coding":'
        f'[{{"system":"{LOINC}","code":"{code}","display":"{display}"}}]}},"subject":{{"reference":"Patient/{p.pid}"}},'
        f'"encounter":{{"reference":"Encounter/{eid}"}},"effectiveDateTime":"{_ts(day)}","valueQuantity":{{"value":'
        f'{value:.1f},"unit":"{unit}","system":"http://unitsofmeasure.org","code":"{unit}"}}}}',
    )


def _blood_pressure(p: _Person, out: PersonRecords, eid: str, day: date, sbp: float, dbp: float) -> None:
    components = ",".join(
        f'{{"code":{{"coding":[{{"system":"{LOINC}","code":"{code}","display":"{name}"}}]}},"valueQuantity":'
        f'{{"value":{value:.0f},"unit":"mm[Hg]","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}}}'
        for (code, name), value in zip(VITALS, (sbp, dbp), strict=True)
    )
    out.add(
        "Observation",
        f'{{"resourceType":"Observation","id":"{p.next_id("o")}","status":"final","category":[{{"coding":[{{"system":'
        f'"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}}]}}],"code":{{"coding":'
        f'[{{"system":"{LOINC}","code":"85354-9","display":"Blood pressure panel"}}]}},"subject":{{"reference":'
        f'"Patient/{p.pid}"}},"encounter":{{"reference":"Encounter/{eid}"}},"effectiveDateTime":"{_ts(day)}",'
        f'"component":[{components}]}}',
    )


def _condition(
    p: _Person, out: PersonRecords, eid: str, day: date, system: str, code: str, display: str
) -> None:
    out.add(
        "Condition",
        f'{{"resourceType":"Condition","id":"{p.next_id("c")}","clinicalStatus":{{"coding":[{{"system":'
        f'"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}}]}},"code":{{"coding":[{{'
        f'"system":"{system}","code":"{code}","display":"{display}"}}]}},"subject":{{"reference":"Patient/{p.pid}"}},'
        f'"encounter":{{"reference":"Encounter/{eid}"}},"onsetDateTime":"{_ts(day)}","recordedDate":"{_ts(day)}"}}',
    )


def _medication(
    p: _Person, out: PersonRecords, eid: str, day: date, code: str, display: str, doc: str
) -> None:
    out.add(
        "MedicationRequest",
        f'{{"resourceType":"MedicationRequest","id":"{p.next_id("m")}","status":"active","intent":"order",'
        f'"medicationCodeableConcept":{{"coding":[{{"system":"{RXNORM}","code":"{code}","display":"{display}"}}]}},'
        f'"subject":{{"reference":"Patient/{p.pid}"}},"encounter":{{"reference":"Encounter/{eid}"}},'
        f'"authoredOn":"{_ts(day)}","requester":{{"reference":"Practitioner/{doc}"}}}}',
    )


def _procedure(
    p: _Person, out: PersonRecords, eid: str, day: date, code: str, display: str, doc: str
) -> None:
    out.add(
        "Procedure",
        f'{{"resourceType":"Procedure","id":"{p.next_id("p")}","status":"completed","code":{{"coding":[{{'
        f'"system":"{SNOMED}","code":"{code}","display":"{display}"}}]}},"subject":{{"reference":"Patient/{p.pid}"}},'
        f'"encounter":{{"reference":"Encounter/{eid}"}},"performedDateTime":"{_ts(day)}",'
        f'"performer":[{{"actor":{{"reference":"Practitioner/{doc}"}}}}]}}',
    )


def _checkup(
    p: _Person, out: PersonRecords, day: date, age: int, v: dict[str, float], site: str, doc: str
) -> str:
    eid = _encounter(p, out, day, "AMB", "185349003", "Encounter for check up", site, doc)
    _blood_pressure(p, out, eid, day, v["sbp"], v["dbp"])
    _observation(p, out, eid, day, "39156-5", "Body mass index", "vital-signs", v["bmi"], "kg/m2")
    if age >= 20:
        _observation(
            p, out, eid, day, "2339-0", "Glucose [Mass/volume] in Blood", "laboratory", v["glucose"], "mg/dL"
        )
        _observation(p, out, eid, day, "18262-6", "Cholesterol in LDL", "laboratory", v["ldl"], "mg/dL")
    if age >= 35 or "t2dm" in p.conditions:
        _observation(p, out, eid, day, "4548-4", "Hemoglobin A1c", "laboratory", v["hba1c"], "%")
        _observation(
            p,
            out,
            eid,
            day,
            "2093-3",
            "Cholesterol [Mass/volume] in Serum or Plasma",
            "laboratory",
            v["chol"],
            "mg/dL",
        )
    if age >= 40 or "t2dm" in p.conditions or "htn" in p.conditions:
        _observation(
            p,
            out,
            eid,
            day,
            *EGFR,
            "laboratory",
            v["egfr"],
            "mL/min/{1.73_m2}",
        )
    if age >= 40 and day.year % 4 == 2:
        _procedure(p, out, eid, day, *ECG, doc)
    if any(name in _DRUGS for name in p.conditions) and day.year % 3 == 1:
        _procedure(p, out, eid, day, *MEDICATION_REVIEW, doc)
    if age >= 15 and day.year % 3 == 0:
        status = ("77176002", "Smoker") if p.smoker else ("266919005", "Never smoker")
        out.add(
            "Observation",
            f'{{"resourceType":"Observation","id":"{p.next_id("o")}","status":"final","category":[{{"coding":[{{'
            f'"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"social-history"}}]}}],'
            f'"code":{{"coding":[{{"system":"{LOINC}","code":"72166-2","display":"Tobacco smoking status"}}]}},'
            f'"subject":{{"reference":"Patient/{p.pid}"}},"encounter":{{"reference":"Encounter/{eid}"}},'
            f'"effectiveDateTime":"{_ts(day)}","valueCodeableConcept":{{"coding":[{{"system":"{SNOMED}",'
            f'"code":"{status[0]}","display":"{status[1]}"}}]}}}}',
        )
    return eid


# One person in TYPED_IDENTIFIER_EVERY has an identifier typed into clinical free text, as happens
# in real records: a narrative Observation whose valueString holds a name and a phone number, a
# resident registration number or an e-mail (and its code.text a name). Ingest must not store them.
TYPED_IDENTIFIER_EVERY = 50
_NARRATIVE = ("46240-8", "History of Hospitalizations+Outpatient visits Narrative")


def _typed_identifier(p: _Person, out: PersonRecords, rng: random.Random) -> None:
    """The narrative Observation; ``rng`` is the person's own stream, so the rest of the output is unchanged."""
    given = rng.choice(_GIVEN_M if p.male else _GIVEN_F)
    family = rng.choice(_FAMILY)
    phone = f"010-{rng.randrange(10000):04d}-{rng.randrange(10000):04d}"
    text = rng.choice(
        (
            f"Guardian {given} {family} {phone}",
            f"RRN {_rrn(p.birth, p.male, rng)} on referral",
            f"Contact {given.lower()}.{family.lower()}@example.kr",
            f"보호자 연락처 {phone.replace('-', '')}",
        )
    )
    day = p.last_event  # a day the person is already seen: the observation period is unchanged
    out.add(
        "Observation",
        f'{{"resourceType":"Observation","id":"{p.next_id("o")}","status":"final","code":{{"coding":[{{"system":'
        f'"{LOINC}","code":"{_NARRATIVE[0]}","display":"{_NARRATIVE[1]}"}}],"text":"Narrative for {given} {family}"}},'
        f'"subject":{{"reference":"Patient/{p.pid}"}},"effectiveDateTime":"{_ts(day)}","valueString":"{text}"}}',
    )


def _patient_line(p: _Person, region: Region, rng: random.Random) -> str:
    given = rng.choice(_GIVEN_M if p.male else _GIVEN_F)
    family = rng.choice(_FAMILY)
    deceased = f',"deceasedDateTime":"{_ts(p.deceased)}"' if p.deceased else ""
    return (
        f'{{"resourceType":"Patient","id":"{p.pid}","identifier":[{{"system":"https://healthmesh.dev/sid/kr-rrn",'
        f'"value":"{_rrn(p.birth, p.male, rng)}"}}],"name":[{{"family":"{family}","given":["{given}"]}}],'
        f'"telecom":[{{"system":"phone","value":"010-{rng.randrange(10000):04d}-{rng.randrange(10000):04d}"}}],'
        f'"gender":"{"male" if p.male else "female"}","birthDate":"{p.birth.isoformat()}"{deceased},'
        f'"address":[{{"line":["{rng.randrange(1, 400)} {rng.choice(_STREETS)}"],"city":"{p.city}",'
        f'"state":"{region.province_code}","postalCode":"{p.postal}{rng.randrange(100):02d}","country":"KR"}}]}}'
    )


def simulate_person(
    region: Region,
    index: int,
    seed: int,
    rng: random.Random,
    seasons: dict[int, float],
    sites: list[tuple[str, str]],
) -> PersonRecords:
    """All FHIR resources of one person, as NDJSON lines grouped by resource type."""
    p = _Person(region, index, seed, rng)
    out = PersonRecords()
    site, doc = sites[rng.randrange(len(sites))]
    mult = region.risk_multiplier
    for year in range(START_YEAR, END_YEAR + 1):
        day = _random_day(rng, year)
        if year == p.birth.year and day <= p.birth:  # born this year: seen after birth
            day = p.birth + timedelta(days=rng.randrange((date(year, 12, 31) - p.birth).days + 1))
        age = p.age(day)
        if age < 0 or p.deceased:
            continue
        v = p.vitals(age)
        first_year = (
            not p.last_event > p.birth
        )  # everyone is seen at least once, so has an observation period
        if first_year or rng.random() < (0.8 if age >= 18 else 0.5):
            eid = _checkup(p, out, day, age, v, site, doc)
            for name in list(p.conditions):
                for code, display in _DRUGS.get(name, ()):
                    _medication(p, out, eid, day, code, display, doc)
        if age >= 25:
            for name, hazard in _hazards(p, age, v, mult).items():
                if name in p.conditions or rng.random() >= hazard:
                    continue
                onset = _random_day(rng, year)
                if onset <= p.birth:
                    continue
                p.conditions[name] = onset
                acute = name in ("ihd", "stroke")
                eid = _encounter(
                    p,
                    out,
                    onset,
                    "EMER" if acute else "AMB",
                    "50849002" if acute else "185345009",
                    "Emergency room admission" if acute else "Encounter for symptom",
                    site,
                    doc,
                )
                if name == "ckd":
                    code, display = (
                        ("433144002", "Chronic kidney disease stage 3")
                        if v["egfr"] < 60
                        else ("431855005", "Chronic kidney disease stage 1")
                    )
                else:
                    code, display = _CONDITION_CODES[name]
                _condition(p, out, eid, onset, SNOMED, code, display)
                if name == "ihd":
                    _condition(p, out, eid, onset, SNOMED, "53741008", "Coronary arteriosclerosis")
                if acute:
                    _procedure(p, out, eid, onset, *_ACUTE_PROCEDURES[name], doc)
                    _encounter(p, out, onset, "IMP", "32485007", "Hospital admission", site, doc)
                for drug_code, drug_display in _DRUGS.get(name, ()):
                    _medication(p, out, eid, onset, drug_code, drug_display, doc)
        # Influenza-like illness: a seasonal epidemic peaking near the region's peak week.
        attack = (
            region.ili_attack_rate * seasons.get(year, 1.0) * (2.0 if age < 10 else 1.3 if age >= 65 else 1.0)
        )
        if rng.random() < attack:
            offset = int(round(rng.gauss(0, 3.2)))
            ili_day = date.fromisocalendar(year, region.ili_peak_week, 3) + timedelta(
                weeks=offset, days=rng.randrange(-3, 4)
            )
            if p.birth < ili_day <= date(END_YEAR, 12, 31):
                eid = _encounter(p, out, ili_day, "AMB", "185345009", "Encounter for symptom", site, doc)
                _condition(p, out, eid, ili_day, LOCAL, "HM-ILI", "Influenza-like illness")
        death_hazard = (
            math.exp(-10.8 + 0.092 * age)
            + (0.06 if "ihd" in p.conditions else 0)
            + (0.08 if "stroke" in p.conditions else 0)
        )
        if rng.random() < death_hazard:
            died = max(p.last_event, date(year, 1, 1)) + timedelta(days=1 + rng.randrange(60))
            p.deceased = died if died <= date(END_YEAR, 12, 31) else None
    out.lines.setdefault("Patient", []).insert(0, _patient_line(p, region, rng))
    if index % TYPED_IDENTIFIER_EVERY == 3:
        _typed_identifier(p, out, random.Random(f"{seed}/{region.hub}/{index}/typed"))
    return out
