"""mtnb: does continued pretraining on machine translation help zero-shot cross-lingual transfer?

A small helper package behind the study's parameterised notebooks (fine-tuning, zero-shot
evaluation, CKA, SVD), the batch runner and the Jupyter Book report. Modules:

- ``mtnb.models.registry``: the model registry (params/models.yaml) and ``load_encoder``;
- ``mtnb.data.languages``: ISO codes to mBART-50 / NLLB language codes;
- ``mtnb.models.random_checkpoints``: random-weight checkpoints at the paper models' shapes;
- ``mtnb.data.mini.libo_help``, ``mtnb.data.mini.corpus``, ``mtnb.data.mini.datasets``: the offline LibreOffice corpus;
- ``mtnb.data.xglue``, ``mtnb.data.tasks``, ``mtnb.data.loading``: XGLUE, the task table, one loader for both;
- ``mtnb.transfer.metrics``: entity F1, accuracy and nDCG as local ``evaluate`` modules;
- ``mtnb.transfer.finetune``, ``mtnb.transfer.probe``, ``mtnb.transfer.zeroshot``, ``mtnb.transfer.controls``: fine-tuning, linear
  probes and zero-shot scoring;
- ``mtnb.analysis.features``, ``mtnb.analysis.cka``, ``mtnb.analysis.cka_study``: pooled features and CKA;
  ``mtnb.analysis.cka_inference``: CKA's bootstrap intervals and permutation null;
  ``mtnb.analysis.separability``: language ID, translation retrieval and mutual k-NN per layer;
  ``mtnb.analysis.paired_bootstrap``: paired bootstrap differences and Holm's correction;
- ``mtnb.analysis.svd``: singular values of encoder weight matrices; ``mtnb.study.paper``: the paper's tables;
- ``mtnb.pretraining.vocab``, ``mtnb.pretraining.zoo``: the mini zoo; ``mtnb.models.me5``: multilingual-e5-small;
- ``mtnb.study.grids``, ``mtnb.study.runner``: grids run with papermill through submitit;
- ``mtnb.cli``: the ``mtnb`` command.
"""

__version__ = "0.1.0"
