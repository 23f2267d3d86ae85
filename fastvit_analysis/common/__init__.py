"""What every analysis shares: batches, results, progress, distributed helpers, train/eval modes.

Internal: the public API lives in `fastvit_analysis`; these modules are imported by its subpackages.
"""
