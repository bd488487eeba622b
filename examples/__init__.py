"""Programs that use the toolkit from a checkout, outside the installed library (``ernie``, ``data_tools``).

``examples.demo`` is the end-to-end demo on the built-in data (``bash scripts/demo.sh``). Importers put the checkout's
root on ``sys.path`` first (``scripts/demo.py``, ``benchmarks/*.py`` and ``tests/test_demo.py`` do).
"""
