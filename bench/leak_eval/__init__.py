"""Labelled evaluation set and evaluator for the ``leak`` detector (see docs/leak-evaluation.md).

Run from the repository root: ``python -m bench.leak_eval --split test --timing``.
"""
