"""Fine-tuning ERNIE downstream: one Task class per task (seq_cls, ner, qa; see tasks.py), file readers
(readers.py), datasets by name (datasets.py; the built-in ones come from data_tools.corpus), metrics, a small trainer,
the shared runner, and the entry functions behind scripts/run_seq_cls.py, run_ner.py and run_qa.py (cli.py)."""
