"""Two bundles scored on the same test rows: accuracy per test set and per product domain.

    python examples/default_model/compare_accuracy.py OLD_BUNDLE NEW_BUNDLE [DATA_DIR]

The rows are the test sets of ``sources-v2.json`` (FDU-MTL test deduplicated against
training, MARC-en validation polarity with and without titles), so an older bundle is
measured on exactly what the newer one was gated on. Prints JSON: each bundle's accuracy
per set, pooled over the 14 product domains and per domain, and the new-minus-old
difference in points, with the product domain that moved least.
"""

import json
import os
import sys

from edgesent import Classifier
from edgesent.card import product_accuracy
from edgesent.card_markdown import MOVIE_DOMAINS
from edgesent_export.gate import evaluate
from edgesent_export.sources import load_sources

old, new = sys.argv[1], sys.argv[2]
data_dir = (
    sys.argv[3] if len(sys.argv) > 3 else os.environ.get("EDGESENT_DATA", "../shared/data/reviews")
)
here = os.path.dirname(os.path.abspath(__file__))
tests = load_sources(os.path.join(here, "sources-v2.json"), data_dir=data_dir).format().test


def score(path: str) -> dict:
    clf = Classifier.load(path)
    labels = list(clf.labels)
    out: dict = {}
    for name, rows in tests.items():
        logits = clf.predict_logits([r.text for r in rows], batch_size=32)
        report = evaluate(name, logits, [labels.index(r.label) for r in rows], labels,
                          [r.domain for r in rows]).report
        block = {"n": len(rows), "accuracy": round(report["accuracy"], 4)}
        if report.get("per_domain"):
            per = report["per_domain"]
            block["per_domain"] = {d: round(v["accuracy"], 4) for d, v in per.items()}
            block["products"] = round(product_accuracy(per), 4)
        out[name] = block
        print(path, name, block["accuracy"], file=sys.stderr, flush=True)
    return out


res = {"old": score(old), "new": score(new)}
delta: dict = {}
for name, block in res["new"].items():
    before = res["old"][name]
    delta[name] = {"accuracy": round((block["accuracy"] - before["accuracy"]) * 100, 2)}
    if "per_domain" in block:
        delta[name]["products"] = round((block["products"] - before["products"]) * 100, 2)
        moves = {d: round((a - before["per_domain"][d]) * 100, 2)
                 for d, a in block["per_domain"].items() if d not in MOVIE_DOMAINS}
        worst = min(moves, key=moves.__getitem__)
        delta[name]["least_moved_product_domain"] = {worst: moves[worst]}
        delta[name]["per_domain"] = moves
res["new_minus_old_points"] = delta
print(json.dumps(res, indent=1))
