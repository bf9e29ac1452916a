"""A terminal feedback kiosk: the customer types a review, the kiosk answers.

Run it at a kiosk, over ssh or on a serial console (no display needed):

    python examples/kiosk.py
    python examples/kiosk.py --model path/to/bundle

or pipe lines in, one review per line:

    printf 'Loved the staff\\nThe queue was far too long\\n' | python examples/kiosk.py

Each line gets its label and confidence. An empty line is skipped; ``quit`` or the end
of input (Ctrl-D) ends the session with a tally.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from edgesent import Classifier, EdgesentError

REPLIES = {
    "positive": "Thank you, we're glad you enjoyed it!",
    "negative": "Sorry to hear that. A member of staff will follow up.",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Terminal feedback kiosk.")
    parser.add_argument("--model", default=None, help="bundle directory (default: embedded)")
    args = parser.parse_args(argv)

    try:
        classifier = Classifier.load(args.model)
    except EdgesentError as exc:  # a missing or damaged bundle: say so in one line
        raise SystemExit(f"error: {exc}") from None
    interactive = sys.stdin.isatty()
    tally: Counter[str] = Counter()
    if interactive:
        print("Tell us about your visit (empty line to skip, 'quit' to leave).")
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or line.strip().lower() == "quit":
            break
        text = line.strip()
        if not text:
            continue
        pred = classifier.predict(text)
        tally[pred.label] += 1
        reply = REPLIES.get(pred.label, "Thank you for your feedback.")
        print(f"{pred.label} ({pred.score:.0%} confident) - {reply}", flush=True)
    summary = ", ".join(f"{n} {label}" for label, n in sorted(tally.items())) or "none"
    print(f"Session over: {sum(tally.values())} reviews ({summary}).")


if __name__ == "__main__":
    main()
