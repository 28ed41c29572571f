"""healthmesh: a network of regional health-data hubs on the OMOP CDM v5.4.

Each hub integrates FHIR R4 and Synthea data into its own CDM, checks and characterizes it,
trains and validates risk models, forecasts infectious disease, and joins the network over
Flower without moving patient rows.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
