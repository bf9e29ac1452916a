"""Two bundles side by side in one process: batch independence and speed.

    python examples/default_model/compare_bundles.py OLD_BUNDLE NEW_BUNDLE [DATA_DIR]

Batch independence: 1,000 FDU-MTL and 1,000 MARC test reviews scored alone, in shuffled
batches of 8 and 32, and next to a 5,000-word review (label flips, largest probability
change). Speed: p50 of one 64-token review on one thread (wall and CPU time), and reviews
per CPU second over 1,024 real reviews, the two graphs alternating.
"""

import json
import os
import random
import sys
import time

import numpy as np

from edgesent import Classifier
from edgesent.runner import Runner
from edgesent_export.sources import load_sources

old, new = sys.argv[1], sys.argv[2]
data_dir = (
    sys.argv[3] if len(sys.argv) > 3 else os.environ.get("EDGESENT_DATA", "../shared/data/reviews")
)
here = os.path.dirname(os.path.abspath(__file__))
tests = load_sources(os.path.join(here, "sources.json"), data_dir=data_dir).format().test
texts = [r.text for r in tests["fdu_mtl_test"]][:1000] + [r.text for r in tests["marc_en_val"]][
    :1000
]
res = {}
for name, path in (("old", old), ("new", new)):
    clf = Classifier.load(path, threads=1)
    ref = clf.predict_proba(texts, batch_size=1)
    worst, flips = 0.0, 0
    for bs in (8, 32):
        for seed in (0, 1):
            order = list(range(len(texts)))
            random.Random(seed).shuffle(order)
            p = clf.predict_proba([texts[i] for i in order], batch_size=bs)
            back = np.empty_like(p)
            back[order] = p
            worst = max(worst, float(np.abs(back - ref).max()))
            flips += int((back.argmax(1) != ref.argmax(1)).sum())
    # next to a 5,000-word review, in one padded call
    long = " ".join(texts[:200])
    enc = clf.runner.encoder
    seqs = enc.token_ids(texts[:512])
    for i in range(0, 512, 16):
        ids, mask = enc.pad([enc.token_ids([long])[0], *seqs[i : i + 16]])
        lg = clf.runner.run(ids, mask)[1:]
        pr = np.exp(lg - lg.max(1, keepdims=True))
        pr /= pr.sum(1, keepdims=True)
        lg2 = clf.predict_logits(texts[i : i + 16], batch_size=1)
        pr2 = np.exp(lg2 - lg2.max(1, keepdims=True))
        pr2 /= pr2.sum(1, keepdims=True)
        worst = max(worst, float(np.abs(pr - pr2).max()))
        flips += int((pr.argmax(1) != pr2.argmax(1)).sum())
    res[name] = {"label_flips": flips, "max_prob_diff": worst}
    print(name, res[name], flush=True)
# latency: 64 tokens, 1 thread, alternating
r = {n: Runner.from_bundle(p, threads=1) for n, p in (("old", old), ("new", new))}
ids = np.array([[101] + [2000 + i for i in range(62)] + [102]])
mask = np.ones_like(ids)
sorted_texts = texts[:1024]
for v in r.values():
    for _ in range(30):
        v.run(ids, mask)
lat = {n: [] for n in r}
cpu = {n: [] for n in r}
thr = {n: [] for n in r}
for rnd in range(40):
    for n, v in r.items():
        for _ in range(10):
            t0, c0 = time.perf_counter(), time.process_time()
            v.run(ids, mask)
            lat[n].append(time.perf_counter() - t0)
            cpu[n].append(time.process_time() - c0)
    if rnd % 8 == 0:
        for n, v in r.items():
            c0 = time.process_time()
            v.logits(sorted_texts)
            thr[n].append(len(sorted_texts) / (time.process_time() - c0))
for n in r:
    res[n].update(
        p50_ms_wall=round(float(np.median(lat[n])) * 1e3, 3),
        p50_ms_cpu=round(float(np.median(cpu[n])) * 1e3, 3),
        reviews_per_cpu_s=round(float(np.median(thr[n])), 1),
    )
res["ratio_new_over_old"] = {
    k: round(res["new"][k] / res["old"][k], 3)
    for k in ("p50_ms_wall", "p50_ms_cpu", "reviews_per_cpu_s")
}
print(json.dumps(res, indent=1))
