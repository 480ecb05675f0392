"""Validation studies of Barret & Dupourque's paper, run by ``scripts/validate.py``.

Each study is ``study(budgets, out_dir, seed) -> dict`` of metrics (JSON-ready)
and writes its PNG figures into ``out_dir`` with names starting with its key.
"""
