"""Fine-tuning ERNIE downstream: built-in datasets, metrics, a small trainer, and the seq_cls / ner entry points."""
