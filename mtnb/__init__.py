"""mtnb: does continued pretraining on machine translation help zero-shot cross-lingual transfer?

A small helper package behind the study's parameterised notebooks (fine-tuning, zero-shot
evaluation, CKA, SVD), the batch runner and the Jupyter Book report. Modules:

- ``mtnb.models``: the model registry (params/models.yaml) and ``load_encoder``;
- ``mtnb.languages``: ISO codes to mBART-50 / NLLB language codes;
- ``mtnb.random_checkpoints``: random-weight checkpoints at the paper models' shapes;
- ``mtnb.cli``: the ``mtnb`` command.
"""

__version__ = "0.1.0"
