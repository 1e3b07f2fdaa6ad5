"""mtnb: does continued pretraining on machine translation help zero-shot cross-lingual transfer?

A helper package behind the study's parameterised notebooks (fine-tuning, zero-shot
evaluation, CKA, SVD), the batch runner and the Jupyter Book report. Its subpackages are
layers, each importing only the ones below it (CONTRIBUTING.md; ``tests/test_layers.py``):

- ``mtnb.core``: errors, paths, YAML, atomic writes, precision, the Hugging Face cache;
- ``mtnb.data``: languages, the task table, XGLUE, the mini corpus, loading, model inputs;
- ``mtnb.models``: the registry, encoder loading, training steps, me5, random checkpoints;
- ``mtnb.pretraining``: the member catalogues, the mini zoo, the e5 family and its heads;
- ``mtnb.analysis``: features, CKA and its uncertainty, separability, paired bootstraps, SVD;
- ``mtnb.transfer``: fine-tuning, probing, jobs, controls, scoring, zero-shot evaluation;
- ``mtnb.study``: grids, the runner, fetch, the output contract, summaries, findings, the book;
- ``mtnb.cli``: the ``mtnb`` command.
"""

__version__ = "0.1.0"
