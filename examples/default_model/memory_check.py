"""RSS of a Python process that classifies the 2,048 longest unlabelled FDU-MTL reviews.

python examples/default_model/memory_check.py [TOKEN_BUDGET] [BUNDLE]
"""

import gzip
import json
import os
import resource
import sys


def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024


def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


import edgesent  # noqa: E402  (after the first RSS reading, on purpose)

print("import", rss(), peak())
budget = int(sys.argv[1])
path = sys.argv[2] if len(sys.argv) > 2 else None
clf = edgesent.Classifier.load(path, threads=1, token_budget=budget)
print("load", rss(), peak())
data = os.environ.get("EDGESENT_DATA", "../shared/data/reviews")
with gzip.open(os.path.join(data, "fdu_mtl.jsonl.gz"), "rt") as fh:
    rows = [json.loads(line) for line in fh]
texts = sorted((r["text"] for r in rows if r["split"] == "unlabel"), key=len)[-2048:]
clf.predict(texts[:64])
print("64 long", rss(), peak())
clf.predict(texts)
print("2048 long", rss(), peak())
