"""mtnb: does continued pretraining on machine translation help zero-shot cross-lingual transfer?

A small helper package behind the study's parameterised notebooks (fine-tuning, zero-shot
evaluation, CKA, SVD), the batch runner and the Jupyter Book report. Modules:

- ``mtnb.models``: the model registry (params/models.yaml) and ``load_encoder``;
- ``mtnb.languages``: ISO codes to mBART-50 / NLLB language codes;
- ``mtnb.random_checkpoints``: random-weight checkpoints at the paper models' shapes;
- ``mtnb.libo_help``, ``mtnb.minicorpus``, ``mtnb.minidata``: the offline LibreOffice corpus;
- ``mtnb.xglue``, ``mtnb.tasks``, ``mtnb.data``: XGLUE, the task table, one loader for both;
- ``mtnb.metrics``: entity F1, accuracy and nDCG as local ``evaluate`` modules;
- ``mtnb.finetune``, ``mtnb.probe``, ``mtnb.zeroshot``, ``mtnb.controls``: fine-tuning, linear
  probes and zero-shot scoring;
- ``mtnb.representations``, ``mtnb.cka``, ``mtnb.cka_study``: pooled features and CKA;
  ``mtnb.cka_inference``: CKA's bootstrap intervals and permutation null;
  ``mtnb.separability``: language ID, translation retrieval and mutual k-NN per layer;
  ``mtnb.paired_bootstrap``: paired bootstrap differences and Holm's correction;
- ``mtnb.svd``: singular values of encoder weight matrices; ``mtnb.paper``: the paper's tables;
- ``mtnb.vocab``, ``mtnb.pretrain``: the mini zoo; ``mtnb.me5``: multilingual-e5-small;
- ``mtnb.grids``, ``mtnb.runner``: grids run with papermill through submitit;
- ``mtnb.cli``: the ``mtnb`` command.
"""

__version__ = "0.1.0"
