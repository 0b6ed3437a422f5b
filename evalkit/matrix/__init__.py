"""Matrices of runs: models x datasets (x each model's precisions), run one after another
or as Ray tasks, reported in one table and gated cell by cell.

:mod:`evalkit.matrix.config` (``load_matrix``, the cells), :mod:`evalkit.matrix.run`
(``run_matrix``), :mod:`evalkit.matrix.table` (a matrix folder read back, its table) and
:mod:`evalkit.matrix.check` (``check_matrix``). Nothing is imported here, so that reading a
matrix folder (``evalkit check``) does not load the run's packages.
"""
