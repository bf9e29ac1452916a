import time
def test_fixtures(tiny_tokenizer_dir, tiny_distilbert_dir, trained_tiny_distilbert_dir, tiny_bert_dir, synthetic_reviews):
    import torch
    from transformers import AutoTokenizer, AutoModelForSequenceClassification
    tok = AutoTokenizer.from_pretrained(trained_tiny_distilbert_dir)
    print(type(tok), len(tok), sorted(p.name for p in tiny_tokenizer_dir.iterdir()))
    print(tok.tokenize("Unbelievably zesty quixotic blender!"))
    m = AutoModelForSequenceClassification.from_pretrained(trained_tiny_distilbert_dir).eval()
    d = synthetic_reviews
    b = tok(d.texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        lg = m(**b).logits
    acc = (lg.argmax(-1) == torch.tensor(d.labels)).float().mean()
    print("acc", acc, lg[:4])
    print(d.texts[:5])
    print(open(tiny_tokenizer_dir / "tokenizer_config.json").read()[:1500])
