"""``healthmesh demo``: the three-hub network on one machine, end to end.

Generates and ingests a regional population per hub, checks and characterizes each hub, trains
the diabetes model at gyeonggi and validates it at the other hubs, forecasts ILI per region, runs
a federated study over Flower, writes one HTML report and (unless told not to) keeps the hub
services up. It sits at the edge, like the CLI: it starts services as processes and imports no API.
"""

from __future__ import annotations

from healthmesh.demo.pipeline import HUBS, DemoConfig, run_demo

__all__ = ["HUBS", "DemoConfig", "run_demo"]
