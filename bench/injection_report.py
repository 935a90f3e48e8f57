"""Precision and recall of the default prompt-injection detector on our labelled sets.

``tests/fixtures/injection_corpus.jsonl`` was written while the rules were built
(in-sample); ``tests/fixtures/injection_heldout.jsonl`` was written after they were frozen,
so its figures are the honest estimate of how the rules generalise. Misses and false
alarms are listed.

Usage: .venv/bin/python bench/injection_report.py [--quiet]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agenttrail.producer import scan_injection

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def report(name: str, quiet: bool) -> None:
    tp = fp = fn = tn = 0
    for line in (FIXTURES / name).read_text().splitlines():
        row = json.loads(line)
        flags = scan_injection(row["text"])
        attack = row["label"] == "attack"
        if attack and flags:
            tp += 1
        elif attack:
            fn += 1
            if not quiet:
                print(f"  missed      {row['text'][:80]!r}")
        elif flags:
            fp += 1
            if not quiet:
                print(f"  false alarm {row['text'][:80]!r} ({', '.join(f.rule for f in flags)})")
        else:
            tn += 1
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    print(
        f"{name}: {tp + fn} attacks, {fp + tn} benign; precision {precision:.2f}, "
        f"recall {recall:.2f} (tp {tp}, fp {fp}, fn {fn}, tn {tn})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="only the figures")
    args = parser.parse_args()
    for name in ("injection_corpus.jsonl", "injection_heldout.jsonl"):
        report(name, args.quiet)


if __name__ == "__main__":
    main()
