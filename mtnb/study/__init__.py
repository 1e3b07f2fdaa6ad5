"""Layer 5, study: grids of jobs, their runs and the book.

``grids`` (params/grids/*.yaml), ``runner`` (papermill through submitit), ``fetch`` (what a grid
reads from the Hub; the preflight), ``sizing``, ``rehearsal`` (the paper grid's stand-in cache),
``paper`` (the paper's tables), ``summary`` (results tables and verdicts), ``book/``.
Imports every layer below it; only ``mtnb.cli`` imports it.
"""
