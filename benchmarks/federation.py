"""Federated logistic regression on the 4-site UCI heart-disease data, every strategy, against pooled training.

Run: .venv/bin/python benchmarks/federation.py [--rounds 10] [--out work/bench-federation]

Each strategy runs `federate train-table` for real: a SuperLink and 4 SuperNodes on loopback with
self-signed TLS. The baseline is a centralised logistic regression on the pooled training parts,
measured in the same run on the same held-out split; the figure is the ratio of pooled AUROCs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from healthmesh.federation import STRATEGIES, train_table

DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "clinical-tabular" / "uci-heart-disease-4sites"
)
SITES = {
    name: DATA / f"processed.{name}.data.csv" for name in ("cleveland", "hungarian", "switzerland", "va")
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("work/bench-federation"))
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGIES))
    args = parser.parse_args()
    if not all(p.is_file() for p in SITES.values()):
        print(f"data not found under {DATA}", file=sys.stderr)
        return 1
    rows = []
    for strategy in args.strategies:
        metrics = train_table(SITES, "target", args.out / strategy, strategy=strategy, rounds=args.rounds)
        rows.append(metrics)
        print(
            json.dumps(
                {k: metrics[k] for k in ("strategy", "federated_auroc", "centralised_auroc", "seconds")}
            )
        )
    print()
    print(
        f"{'strategy':10} {'rounds':>6} {'fed AUROC':>10} {'central':>8} {'ratio':>6} {'diff':>7} "
        f"{'fed acc':>8} {'central acc':>11} {'bytes':>9} {'seconds':>8}"
    )
    for m in rows:
        print(
            f"{m['strategy']:10} {m['rounds']:>6} {m['federated_auroc']:>10.4f} {m['centralised_auroc']:>8.4f} "
            f"{m['federated_auroc'] / m['centralised_auroc']:>6.3f} {m['federated_minus_centralised']:>+7.4f} "
            f"{m['federated_accuracy']:>8.3f} {m['centralised_accuracy']:>11.3f} {m['bytes_exchanged']:>9,} "
            f"{m['seconds']:>8.1f}"
        )
    local = rows[0]["local_auroc_per_site"]
    print("local AUROC per site:", {k: None if v is None else round(v, 4) for k, v in local.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
