"""``healthmesh synth``: stream a regional population as FHIR Bulk NDJSON."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from healthmesh.errors import ConfigError
from healthmesh.ingest.synth.population import END_YEAR, START_YEAR, simulate_person
from healthmesh.ingest.synth.real_world import real_world_lines
from healthmesh.ingest.synth.regions import Region, region_for
from healthmesh.ingest.synth.writer import NdjsonWriter

__all__ = ["CHUNK", "generate_population"]

CHUNK = 1000  # people per random stream; fixed, so that the output depends on the seed only


def _seasons(region: Region, seed: int) -> dict[int, float]:
    rng = random.Random(f"{seed}/{region.hub}/seasons")
    seasons = {year: 0.6 + 0.9 * rng.random() for year in range(START_YEAR, END_YEAR + 1)}
    for year in (2021, 2022):  # the pandemic years had almost no influenza
        seasons[year] *= 0.15
    return seasons


def _sites(region: Region, writer: NdjsonWriter) -> list[tuple[str, str]]:
    sites, organizations, practitioners = [], [], []
    for i, (city, postal) in enumerate(region.cities):
        org = f"{region.hub}-org-{i + 1}"
        organizations.append(
            f'{{"resourceType":"Organization","id":"{org}","identifier":[{{"system":"https://healthmesh.dev/sid/org",'
            f'"value":"{org}"}}],"active":true,"type":[{{"coding":[{{"system":'
            f'"http://terminology.hl7.org/CodeSystem/organization-type","code":"prov"}}]}}],'
            f'"name":"{region.province_name} {city} Medical Center","address":[{{"city":"{city}",'
            f'"state":"{region.province_code}","postalCode":"{postal}00","country":"KR"}}]}}'
        )
        for j in range(4):
            doc = f"{region.hub}-dr-{i + 1}-{j + 1}"
            practitioners.append(
                f'{{"resourceType":"Practitioner","id":"{doc}","identifier":[{{"system":'
                f'"https://healthmesh.dev/sid/license","value":"{doc}"}}],"active":true,"name":[{{"family":"Doctor",'
                f'"given":["{city}{j + 1}"]}}],"gender":"{"male" if j % 2 else "female"}"}}'
            )
            sites.append((org, doc))
    writer.write("Organization", organizations)
    writer.write("Practitioner", practitioners)
    return sites


def generate_population(
    hub: str,
    patients: int,
    seed: int,
    out_dir: Path,
    max_lines_per_file: int = 1_000_000,
    progress: Callable[[int, int], None] | None = None,
    real_world: bool = False,
) -> dict[str, int]:
    """Write ``patients`` people of ``hub``'s region to ``out_dir``; returns resources per type.

    Memory stays bounded: one chunk of people is held at a time. ``real_world`` writes the same
    population in the forms hospitals send (``real_world.py``: other reference forms, contained
    and referenced Medications, 1 record in 100 bad).
    """
    if patients < 1:
        raise ConfigError(f"--patients must be at least 1; got {patients}")
    region = region_for(hub)
    seasons = _seasons(region, seed)
    writer = NdjsonWriter(out_dir, max_lines_per_file)
    medications: dict[str, bytes] = {}
    try:
        sites = _sites(region, writer)
        for start in range(0, patients, CHUNK):
            rng = random.Random(f"{seed}/{region.hub}/{start // CHUNK}")
            chunk: dict[str, list[str]] = {}
            for index in range(start, min(start + CHUNK, patients)):
                for resource_type, lines in simulate_person(
                    region, index, seed, rng, seasons, sites
                ).lines.items():
                    chunk.setdefault(resource_type, []).extend(lines)
            if real_world:
                chunk = real_world_lines(
                    chunk, random.Random(f"{seed}/{region.hub}/real/{start}"), hub, medications
                )
            for resource_type in sorted(chunk):
                writer.write(resource_type, chunk[resource_type])
            if progress:
                progress(min(start + CHUNK, patients), patients)
        writer.write("Medication", [line.decode() for line in medications.values()])
    finally:
        writer.close()
    return dict(writer.counts)
