"""Layer 2, models: which encoders the study has and how they are read and trained.

``registry`` (params/models.yaml, ModelSpec, where a checkpoint lives), ``loading``
(``load_encoder``, checkpoint reading), ``training`` (seeding, optimiser, schedule, one step),
``me5`` (multilingual-e5-small converted from its package), ``random_checkpoints``.
Imports ``mtnb.core`` and ``mtnb.data``.
"""
