"""Layer 4, transfer: training on English and scoring in every language.

``finetune`` (a task head on the encoder), ``probe`` (a linear probe on cached features),
``jobs`` (one job of either mode over seeds), ``controls`` (majority class, bag of subwords),
``scoring`` and ``metrics/`` (entity F1, accuracy, nDCG), ``run_folders``, ``zeroshot``.
Imports the layers below it.
"""
