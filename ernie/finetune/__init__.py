"""Fine-tuning ERNIE downstream: one Task class per task (seq_cls, ner, qa; see tasks.py), built-in and benchmark
datasets, metrics, a small trainer and the shared runner behind scripts/run_seq_cls.py, run_ner.py and run_qa.py."""
