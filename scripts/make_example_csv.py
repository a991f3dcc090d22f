#!/usr/bin/env python3
"""Write a reproducible customers CSV for `finalpos import customers FILE`.

    python scripts/make_example_csv.py                       # examples/customers.csv, 3,000 rows
    python scripts/make_example_csv.py --rows 100000 --invalid 0 -o /tmp/big.csv

The rows are generated from a fixed seed, so the committed `examples/customers.csv` is
re-created byte for byte. Headers are snake_case with dotted nested fields (`billing.city`) to
show what the importer accepts. `--invalid N` rows are deliberately broken, each in a different
way (missing required field, wrong type, malformed JSON list, ...), so the import shows how bad rows
are reported; their line numbers are printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

COLUMNS = [
    "email",
    "first_name",
    "last_name",
    "phone",
    "external_id",
    "tags",
    "total_spent",
    "billing.address1",
    "billing.city",
    "billing.state",
    "billing.country",
    "billing.post_code",
    "metadata",
]

FIRST = [
    "Ada",
    "Grace",
    "Linus",
    "Guido",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "Edsger",
    "Radia",
    "Donald",
    "Hedy",
    "Alan",
    "Karen",
    "Tim",
    "Sophie",
    "Yukihiro",
]
LAST = [
    "Lovelace",
    "Hopper",
    "Torvalds",
    "van Rossum",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Knuth",
    "Lamarr",
    "Turing",
    "Spärck Jones",
    "Berners-Lee",
    "Wilson",
    "Matsumoto",
]
CITIES = [
    ("New York", "NY", "USA", "100"),
    ("Austin", "TX", "USA", "733"),
    ("Toronto", "ON", "Canada", "M5V"),
    ("Berlin", "BE", "Germany", "101"),
    ("Lisbon", "LI", "Portugal", "110"),
    ("Osaka", "OS", "Japan", "530"),
]
TAGS = ["vip", "loyal", "premium", "newsletter", "wholesale", "staff"]
STREETS = ["Main St", "Market St", "Harbour Rd", "Elm Ave", "King St W", "Rua Augusta"]

# (what is wrong, how to break a good row): each shows a different validation message.
BREAKAGES = [
    ("missing email", lambda row: row.update({"email": ""})),
    # a type the spec rules out (an email without @ would not do: the spec gives email no format)
    ("tags: a number where text is expected", lambda row: row.update({"tags": '[7, "vip"]'})),
    ("missing last name", lambda row: row.update({"last_name": ""})),
    ("tags: malformed JSON list", lambda row: row.update({"tags": '["vip", "loyal"'})),
    ("metadata: not a JSON array", lambda row: row.update({"metadata": "tier=gold"})),
    ("metadata item without value", lambda row: row.update({"metadata": '[{"key": "tier"}]'})),
]


def _ascii(name: str) -> str:
    """`Spärck Jones` -> `sparckjones`: email local parts kept to plain ASCII."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum() or ch == "-")


def rows(count: int, *, invalid: int, seed: int) -> Iterator[tuple[dict[str, str], str | None]]:
    """(row, what is wrong with it or None) for `count` rows, `invalid` of them broken."""
    rng = random.Random(seed)
    bad_at = set(rng.sample(range(count), min(invalid, count))) if invalid else set()
    broken = 0
    for n in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        city, state, country, post = rng.choice(CITIES)
        row = {
            "email": f"{_ascii(first)}.{_ascii(last)}.{n}@example.com",
            "first_name": first,
            "last_name": last,
            "phone": f"+1555{rng.randrange(10**6, 10**7)}",
            "external_id": f"legacy-{n:06d}" if rng.random() < 0.3 else "",
            "tags": ";".join(rng.sample(TAGS, rng.randrange(0, 3))),
            "total_spent": f"{rng.randrange(0, 500_000) / 100:.2f}",
            "billing.address1": f"{rng.randrange(1, 999)} {rng.choice(STREETS)}",
            "billing.city": city,
            "billing.state": state,
            "billing.country": country,
            "billing.post_code": f"{post}{rng.randrange(10, 99)}",
            "metadata": json.dumps([{"key": "tier", "value": rng.choice(["gold", "silver"])}])
            if rng.random() < 0.1
            else "",
        }
        problem = None
        if n in bad_at:
            problem, breaker = BREAKAGES[broken % len(BREAKAGES)]
            breaker(row)
            broken += 1
        yield row, problem


def write(out: TextIO, count: int, *, invalid: int, seed: int) -> list[tuple[int, str]]:
    """Write the CSV to `out`; returns (line number, problem) of the broken rows."""
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    problems = []
    for line, (row, problem) in enumerate(rows(count, invalid=invalid, seed=seed), start=2):
        writer.writerow(row)
        if problem:
            problems.append((line, problem))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-o", "--output", default=str(Path(__file__).parent.parent / "examples" / "customers.csv")
    )
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--invalid", type=int, default=6)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    if args.output == "-":
        problems = write(sys.stdout, args.rows, invalid=args.invalid, seed=args.seed)
    else:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            problems = write(out, args.rows, invalid=args.invalid, seed=args.seed)
        print(f"wrote {args.rows} rows to {args.output}", file=sys.stderr)
    for line, problem in problems:
        print(f"  line {line}: {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
