import hashlib
def test_probe(tiny_distilbert_dir):
    with open("/tmp/probe.txt", "a") as f:
        for n in ("vocab.txt", "tokenizer.json", "model.safetensors"):
            print(n, hashlib.sha256((tiny_distilbert_dir / n).read_bytes()).hexdigest()[:12], file=f)
