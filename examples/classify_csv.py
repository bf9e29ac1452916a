"""Add sentiment columns to a CSV of reviews.

Run it:

    python examples/classify_csv.py reviews.csv labelled.csv --column review
    python examples/classify_csv.py reviews.csv labelled.csv --model path/to/bundle

Every input column is kept; ``label`` and ``score`` are appended. The whole file is read
into memory; for files too large for that, see ``batch_job.py``.
"""

from __future__ import annotations

import argparse
import csv

from edgesent import Classifier, EdgesentError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Add label and score columns to a CSV.")
    parser.add_argument("input", help="CSV file with a header row")
    parser.add_argument("output", help="CSV file to write")
    parser.add_argument("--column", default="text", help="column holding the review text")
    parser.add_argument("--model", default=None, help="bundle directory (default: embedded)")
    args = parser.parse_args(argv)

    with open(args.input, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows, columns = list(reader), list(reader.fieldnames or [])
    if args.column not in columns:
        parser.error(f"{args.input} has no column {args.column!r} (columns: {columns})")

    try:
        classifier = Classifier.load(args.model)
    except EdgesentError as exc:  # a missing or damaged bundle: say so in one line
        raise SystemExit(f"error: {exc}") from None
    predictions = classifier.predict([row[args.column] or "" for row in rows])

    with open(args.output, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*columns, "label", "score"])
        writer.writeheader()
        for row, pred in zip(rows, predictions, strict=True):
            score = "" if pred.score is None else f"{pred.score:.4f}"
            writer.writerow({**row, "label": pred.label or "", "score": score})
    print(f"wrote {len(rows)} rows to {args.output}")


if __name__ == "__main__":
    main()
