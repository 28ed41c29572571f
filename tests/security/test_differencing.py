"""Differencing attacks: pairs and triples of released counts aimed at cells of 1-4 persons.

The attacker holds a researcher's token for a hub served as a real process (``healthmesh hub serve``,
production, a strong ``HEALTHMESH_SECRET_KEY``) and the coordinator's view of three hubs' federated
counts (``hub_concept_counts``: exactly what each hub's ClientApp runs). Each attack aims at a cell it
cannot ask for (asked directly, it is withheld): the persons one extra rule removes, a complement, a
union's surplus, an intersection (A + B - A-or-B), and the same again by repeated or rephrased queries.

The bound, stated first (from ``Release.noise_distribution``): each released count is ``n + e``,
``e`` uniform on -3..3 and fixed per person set. A combination of ``k`` released cells is off by a sum
of ``k`` independent draws, so the attacker's guess is exact with probability P(sum = 0): 1/7 = 14.3%
for a pair, 37/343 = 10.8% for a triple, 7.3% for nine cells (three hubs). And never with certainty:
"withheld" means 0 .. 7 and a released ``v`` means ``max(5, v - 3) .. v + 3``
(``Release.possible_counts``), so the cell values consistent with a pair or a triple form an interval
at least 7 wide around the truth, of which 0 .. 7 keeps at least two. Repeating or rephrasing a query
returns the same values (same persons, same noise): it adds nothing.
Counts of 100 and more are within 3 of the truth (3% at most).
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from healthmesh.api.launch import start_hub_service
from healthmesh.cdm import HubDatabase, connect
from healthmesh.cohorts import build_cohort, load_cohort
from healthmesh.federation.cdm_tasks import hub_concept_counts
from healthmesh.federation.guard import SUPPRESSED
from healthmesh.hubkeys import HubKeys
from healthmesh.privacy.release import Release

HUB = "gyeonggi"
MIN_COUNT = 5
VISIT = {"visit": [{"concept_id": 9202}]}
GENDERS = (8507, 8532)
# (domain, concept) of the events an extra rule asks about; None: any record (death).
EVENTS = (
    ("condition", 443614),
    ("condition", 4329847),
    ("condition", 317576),
    ("condition", 381316),
    ("condition", 443597),
    ("condition", 201826),
    ("drug", 1545959),
    ("observation", 3051031),
    ("death", None),
)
AGE_WINDOWS = tuple((lo, lo + width) for width in (9, 19) for lo in range(20, 90, 10))
API_TARGETS = 25  # cells attacked through the API, four ways each


# -- the attacker's arithmetic ---------------------------------------------------------------------


@dataclass
class Attack:
    """Released counts (``sign``, value; None = withheld) whose signed sum is the target cell."""

    kind: str
    channel: str
    truth: int
    terms: list[tuple[int, int | None]]
    cells: frozenset[tuple[str, ...]] = field(default_factory=frozenset)  # which sets: for independence


def consistent_values(release: Release, attack: Attack) -> set[int] | None:
    """Every value of the target that the answers allow (None: refused, a term was withheld)."""
    if any(value is None for _, value in attack.terms):
        return None
    low = high = 0
    for sign, value in attack.terms:
        possible = release.possible_counts(value)
        low += sign * (possible.start if sign > 0 else possible.stop - 1)
        high += sign * (possible.stop - 1 if sign > 0 else possible.start)
    # The target, asked directly, was withheld: it lies in possible_counts(None) too.
    return set(range(max(low, 0), high + 1)) & set(release.possible_counts(None))


def guess(attack: Attack) -> int:
    return sum(sign * int(value) for sign, value in attack.terms if value is not None)


def exact_probability(release: Release, cells: int) -> float:
    """P(the sum of ``cells`` independent perturbations is 0), from the method's noise distribution."""
    noise = release.noise_distribution()
    total = {0: 1.0}
    for _ in range(cells):
        step: dict[int, float] = {}
        for s, p in total.items():
            for e, q in noise.items():
                step[s + e] = step.get(s + e, 0.0) + p * q
        total = step
    return total.get(0, 0.0)


# -- the served hub --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServedHub:
    url: str
    token: str
    release: Release  # the hub operator's: used only to check the figures, never by the attacker
    truth_db: HubDatabase
    queries: int = 0

    def attrition(self, definition: dict[str, Any]) -> list[int | None]:
        self.queries += 1
        answer = httpx.post(
            f"{self.url}/cohorts/count",
            json={"definition": definition},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        return [step["persons"] for step in answer.json()["attrition"]]

    def truth(self, definition: dict[str, Any]) -> list[int]:
        steps = build_cohort(self.truth_db, load_cohort(definition), prefix="hm_truth")
        return [int(step["persons"]) for step in steps.attrition]  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def served(generated_hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedHub]:
    folder = tmp_path_factory.mktemp("differencing-hub")
    db = folder / "hub.duckdb"
    shutil.copyfile(generated_hub, db)
    secret = secrets.token_hex(32)
    with pytest.MonkeyPatch.context() as patch:
        for name in [k for k in os.environ if k.startswith("HEALTHMESH_")]:
            patch.delenv(name)  # production: nothing chosen but the secret
        process, url = start_hub_service(
            HUB,
            db,
            _free_port(),
            env={"HEALTHMESH_SECRET_KEY": secret},
            log_file=folder / "log",
            timeout_s=120,
        )
    keys = HubKeys(secret.encode())
    try:
        answer = httpx.post(
            f"{url}/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "researcher",
                "client_secret": keys.client_secret(HUB, "researcher"),
            },
        )
        assert answer.status_code == 200, answer.text
        with connect(generated_hub, read_only=True) as truth_db:
            yield ServedHub(url, answer.json()["access_token"], Release(keys.release, MIN_COUNT), truth_db)
    finally:
        process.terminate()
        process.wait(30)


# -- the attacks on the API ------------------------------------------------------------------------


def _cohort(name: str, rules: list[dict[str, Any]], entry: dict[str, Any] | None = None, **sets: Any) -> dict:
    return {
        "name": name,
        "concept_sets": {**VISIT, **sets},
        "entry": entry or {"domain": "visit", "concept_set": "visit", "limit": "first"},
        "inclusion_rules": rules,
    }


def _gender(g: int) -> dict[str, Any]:
    return {"name": f"gender {g}", "gender_concept_ids": [g]}


def _age(lo: int, hi: int) -> dict[str, Any]:
    return {"name": f"aged {lo} to {hi}", "age_min": lo, "age_max": hi}


def _events(domain: str, concept: int | None, never: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """A rule 'has (never had) this event', and the concept sets it needs."""
    sets = {"x": [{"concept_id": concept}]} if concept is not None else {}
    rule: dict[str, Any] = {
        "name": f"{'never' if never else 'ever'} {domain} {concept}",
        "domain": domain,
        "window": {"start_days": None, "end_days": None},
    }
    if concept is not None:
        rule["concept_set"] = "x"
    if never:
        rule["max_count"] = 0
    return rule, sets


def _small_cells(db: HubDatabase) -> list[tuple[int, int, int, str, int | None, int]]:
    """(gender, age lo, age hi, domain, concept, size): cells of 1-4 persons within a base of 20 or more."""
    persons = db.df(
        """SELECT p.person_id, any_value(p.gender_concept_id) AS gender,
                  year(min(v.visit_start_date)) - any_value(p.year_of_birth) AS age
           FROM person p JOIN visit_occurrence v ON v.person_id = p.person_id AND v.visit_concept_id = 9202
           GROUP BY p.person_id"""
    )
    events = db.df(
        """SELECT 'condition' AS domain, condition_concept_id AS concept, person_id FROM condition_occurrence
           UNION SELECT 'drug', drug_concept_id, person_id FROM drug_exposure
           UNION SELECT 'observation', observation_concept_id, person_id FROM observation
           UNION SELECT 'death', NULL, person_id FROM death"""
    )
    cells = []
    for domain, concept in EVENTS:
        mask = events["domain"].eq(domain) & (events["concept"].eq(concept) if concept else True)
        having = set(events.loc[mask, "person_id"])
        for g in GENDERS:
            for lo, hi in AGE_WINDOWS:
                base = persons[persons["gender"].eq(g) & persons["age"].between(lo, hi)]
                size = int(base["person_id"].isin(having).sum())
                if len(base) >= 20 and 1 <= size <= 4:
                    cells.append((g, lo, hi, domain, concept, size))
    return cells


def _api_attacks(hub: ServedHub) -> list[Attack]:
    attacks: list[Attack] = []
    cells = _small_cells(hub.truth_db)
    for g, lo, hi, domain, concept, _ in cells[:: max(1, len(cells) // API_TARGETS)][:API_TARGETS]:
        never, sets = _events(domain, concept, never=True)
        ever, _ = _events(domain, concept, never=False)
        cell = (str(g), str(lo), str(hi), domain, str(concept))
        # The target asked directly: withheld.
        direct = _cohort("target", [_gender(g), _age(lo, hi), ever], **sets)
        truth = hub.truth(direct)[-1]
        assert 1 <= truth <= 4 and hub.attrition(direct)[-1] is None
        pair = frozenset({("base", *cell[:3]), ("complement", *cell)})

        # One extra rule: the step before it and the step after it, in one answer.
        extra = _cohort("extra rule", [_gender(g), _age(lo, hi), never], **sets)
        shown, exact = hub.attrition(extra), hub.truth(extra)
        assert exact[-2] - exact[-1] == truth
        attacks.append(Attack("extra rule", "api", truth, [(1, shown[-2]), (-1, shown[-1])], pair))

        # The base and its complement, asked separately, the rules in another order.
        base = hub.attrition(_cohort("base", [_gender(g), _age(lo, hi)]))
        complement = hub.attrition(_cohort("complement", [never, _age(lo, hi), _gender(g)], **sets))
        attacks.append(Attack("complement", "api", truth, [(1, base[-1]), (-1, complement[-1])], pair))

        # The same query again and again: the same answer, so nothing averages away.
        assert hub.attrition(extra) == shown
        attacks.append(Attack("repeat", "api", truth, [(1, shown[-2]), (-1, shown[-1])], pair))

        # The same sets phrased otherwise: gender among a list of two, the age range as two rules.
        rules = [
            {"name": "gender", "gender_concept_ids": [g, 0]},
            {"name": "old enough", "age_min": lo},
            {"name": "young enough", "age_max": hi},
            never,
        ]
        rephrased = hub.attrition(_cohort("rephrased", rules, **sets))
        assert rephrased[-2] == base[-1] and rephrased[-1] == complement[-1]  # same persons, same noise
        attacks.append(Attack("rephrase", "api", truth, [(1, rephrased[-2]), (-1, rephrased[-1])], pair))
    attacks += _union_attacks(hub)
    return attacks


def _union_attacks(hub: ServedHub) -> list[Attack]:
    """Persons with condition x or y (one entry concept set): A-or-B minus B, and A + B - A-or-B."""
    conditions = [c for d, c in EVENTS if d == "condition"][:5]
    attacks = []
    for i, x in enumerate(conditions):
        for y in conditions[i + 1 :]:
            for g in GENDERS:
                counts: dict[str, tuple[int | None, int]] = {}
                for name, members in (("x", [x]), ("y", [y]), ("xy", [x, y])):
                    definition = _cohort(
                        name,
                        [_gender(g)],
                        {"domain": "condition", "concept_set": "c", "limit": "first"},
                        c=[{"concept_id": m} for m in members],
                    )
                    counts[name] = (hub.attrition(definition)[-1], hub.truth(definition)[-1])
                (ax, tx), (ay, ty), (axy, txy) = counts["x"], counts["y"], counts["xy"]
                sets = {name: ("union", str(g), name, str(x), str(y)) for name in counts}
                if 1 <= tx + ty - txy <= 4:
                    cells = frozenset(sets.values())
                    terms = [(1, ax), (1, ay), (-1, axy)]
                    attacks.append(Attack("intersection", "api", tx + ty - txy, terms, cells))
                for only, (a_other, t_other) in (("x", (ay, ty)), ("y", (ax, tx))):
                    if 1 <= txy - t_other <= 4:
                        other = "y" if only == "x" else "x"
                        cells = frozenset({sets["xy"], sets[other]})
                        terms = [(1, axy), (-1, a_other)]
                        attacks.append(Attack("union surplus", "api", txy - t_other, terms, cells))
    return attacks


# -- the attacks on federated counts ---------------------------------------------------------------


FEDERATED_CONCEPTS = (443614, 4329847, 317576, 381316, 443597, 1545959, 3051031, 3000483)


def _federated_attacks(hubs: dict[str, Path], releases: dict[str, Release]) -> tuple[list[Attack], int]:
    """A, B and A-or-B from every hub: per hub (the coordinator sees each reply) and summed."""
    answers: dict[tuple[str, tuple[int, ...]], tuple[int, int]] = {}

    def ask(hub: str, concepts: tuple[int, ...]) -> tuple[int | None, int]:
        if (hub, concepts) not in answers:
            job = {"concept_ids": list(concepts), "characterize": False}
            counts, exact = hub_concept_counts(str(hubs[hub]), job, releases[hub])
            answers[hub, concepts] = (counts["persons"], exact)
        shown, exact = answers[hub, concepts]
        return (None if shown == SUPPRESSED else shown), exact

    attacks = []
    for i, a in enumerate(FEDERATED_CONCEPTS):
        for b in FEDERATED_CONCEPTS[i + 1 :]:
            per_hub = {h: [ask(h, (a,)), ask(h, (b,)), ask(h, (a, b))] for h in hubs}
            total_terms: list[tuple[int, int | None]] = []
            total_truth = 0
            for h, ((sa, ta), (sb, tb), (sab, tab)) in per_hub.items():
                terms = [(1, sa), (1, sb), (-1, sab)]
                cells = frozenset({(h, str(a)), (h, str(b)), (h, f"{a}|{b}")})
                if 1 <= ta + tb - tab <= 4:
                    attacks.append(
                        Attack("federated intersection", "federation", ta + tb - tab, terms, cells)
                    )
                if 1 <= tab - ta <= 4:
                    pair = frozenset({(h, str(a)), (h, f"{a}|{b}")})
                    terms_ab = [(1, sab), (-1, sa)]
                    attacks.append(Attack("federated union surplus", "federation", tab - ta, terms_ab, pair))
                total_terms += terms
                total_truth += ta + tb - tab
            if 1 <= total_truth <= 4:
                cells = frozenset((h, c) for h in hubs for c in (str(a), str(b), f"{a}|{b}"))
                attacks.append(Attack("network intersection", "federation", total_truth, total_terms, cells))
    return attacks, len(answers)


@pytest.fixture(scope="module")
def three_hubs(generated_hubs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from healthmesh.ingest import build_synthetic_hub

    third = tmp_path_factory.mktemp("differencing-gwangju") / "gwangju.duckdb"
    build_synthetic_hub(third, "gwangju", 1500, 3, secrets.token_bytes(32))
    return {**generated_hubs, "gwangju": third}


# -- the test ---------------------------------------------------------------------------------------


def test_no_differencing_attack_recovers_a_small_cell(served: ServedHub, three_hubs: dict[str, Path]) -> None:
    release = served.release
    bound = {k: exact_probability(release, k) for k in (2, 3, 9)}
    print(
        f"\nbound (noise uniform on -{release.max_noise}..{release.max_noise}): an exact guess from 2 cells "
        f"{bound[2]:.3f}, 3 cells {bound[3]:.3f}, 9 cells {bound[9]:.3f}; never certain"
    )
    started = time.perf_counter()
    attacks = _api_attacks(served)
    api_queries, api_s = served.queries, time.perf_counter() - started
    releases = {h: Release(secrets.token_bytes(32), MIN_COUNT) for h in three_hubs}
    started = time.perf_counter()
    federated, federated_queries = _federated_attacks(three_hubs, releases)
    federated_s = time.perf_counter() - started
    attacks += federated
    assert len(attacks) >= 100, len(attacks)

    refused, answered = 0, []
    for attack in attacks:
        possible = consistent_values(release, attack)
        if possible is None:
            refused += 1
            continue
        assert attack.truth in possible, attack
        assert len(possible) > 1, f"{attack.kind} pins the cell: {attack}"  # never with certainty
        answered.append(attack)

    # The share of exact guesses over independent draws: attacks on the same cells give the same
    # answers (that is the defence against repeats and rephrasing), so they count once.
    distinct = {(a.cells, tuple(a.terms)): a for a in answered}.values()
    exact = sum(guess(a) == a.truth for a in distinct)
    expected = sum(bound[len(a.terms)] for a in distinct)
    slack = 3 * math.sqrt(sum(bound[len(a.terms)] * (1 - bound[len(a.terms)]) for a in distinct))
    kinds = pd.Series([a.kind for a in attacks]).value_counts().to_dict()
    print(
        f"{len(attacks)} attacks ({api_queries} API queries in {api_s:.0f} s, {federated_queries} federated "
        f"counts in {federated_s:.0f} s): {kinds}; "
        f"{refused} refused, {len(answered)} answered, none certain (smallest consistent set: "
        f"{min((len(consistent_values(release, a) or ()) for a in answered), default=0)} values); "
        f"exact guesses {exact} of {len(distinct)} independent ({exact / max(len(distinct), 1):.1%}), "
        f"bound {expected / max(len(distinct), 1):.1%} + slack {slack / max(len(distinct), 1):.1%}"
    )
    assert len(distinct) >= 20
    assert exact <= expected + slack


def test_large_counts_keep_the_stated_accuracy(served: ServedHub) -> None:
    """Counts of 100 and more: within 3 of the truth (the method's stated accuracy)."""
    errors = []
    for g in (*GENDERS, None):
        for lo, hi in ((0, 200), (20, 59), (40, 79), (60, 200), (30, 69)):
            rules = ([_gender(g)] if g else []) + [_age(lo, hi)]
            definition = _cohort("large", rules)
            for shown, exact in zip(served.attrition(definition), served.truth(definition), strict=True):
                if exact >= 100:
                    assert shown is not None
                    errors.append(shown - exact)
    worst = max(abs(e) for e in errors)
    print(
        f"\n{len(errors)} counts of 100 or more: error {min(errors)}..{max(errors)}, "
        f"mean {sum(errors) / len(errors):+.2f}, worst {worst} (stated: at most {served.release.max_noise})"
    )
    assert len(errors) >= 15 and worst <= served.release.max_noise
    assert len(set(errors)) > 1  # perturbed indeed
