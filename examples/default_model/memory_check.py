"""RSS of a Python process that classifies the 2,048 longest unlabelled FDU-MTL reviews.

python examples/default_model/memory_check.py [TOKEN_BUDGET] [BUNDLE]

The reviews are read (and the rest of the file dropped) before edgesent is imported, so
the figures are edgesent's: import, load, the first 64 reviews, all 2,048. Set
``ARENA=0`` to hand ONNX Runtime's buffers back after each call.
"""

import gc
import gzip
import json
import os
import resource
import sys


def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024


def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


budget = int(sys.argv[1]) if len(sys.argv) > 1 else 512
path = sys.argv[2] if len(sys.argv) > 2 else None
data = os.environ.get("EDGESENT_DATA", "../shared/data/reviews")
with gzip.open(os.path.join(data, "fdu_mtl.jsonl.gz"), "rt") as fh:
    texts = sorted((row["text"] for row in map(json.loads, fh) if row["split"] == "unlabel"),
                   key=len)[-2048:]
gc.collect()
print("texts read", rss(), peak())

import edgesent  # noqa: E402  (after the texts, on purpose)

print("import", rss(), peak())
clf = edgesent.Classifier.load(path, threads=1, token_budget=budget,
                               memory_arena=os.environ.get("ARENA", "1") == "1")
print("load", rss(), peak())
clf.predict(texts[:64])
print("64 long", rss(), peak())
clf.predict(texts)
print("2048 long", rss(), peak())
