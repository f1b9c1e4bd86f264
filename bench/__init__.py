"""Benchmarks for lightweight_charts_pro_backend (see DESIGN.md section 8).

Run everything with ``python -m bench.run_all`` (or ``python bench/run_all.py``).
"""
