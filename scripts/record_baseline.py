"""Write a run's result.json as a committed baseline: the same record, less what a gate
never reads and what would make the file large (precision-recall curves, model statistics,
memory estimates).

    evalkit run benchmarks/configs/tfod_coco128.yaml --out /tmp/tfod
    python scripts/record_baseline.py /tmp/tfod benchmarks/baselines/tfod_coco128/result.json
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from evalkit.record import load_result, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder or its result.json")
    parser.add_argument("baseline", type=Path, help="the baseline result.json to write")
    args = parser.parse_args()
    record = load_result(args.run)
    variants = {
        name: replace(
            v,
            model_stats=None,
            memory=None,
            protocols={p: replace(r, pr_curves=None) for p, r in v.protocols.items()},
        )
        for name, v in record.variants.items()
    }
    args.baseline.parent.mkdir(parents=True, exist_ok=True)
    write_result(args.baseline, replace(record, variants=variants))
    print(f"wrote {args.baseline}")


if __name__ == "__main__":
    main()
