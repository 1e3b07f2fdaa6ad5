"""Layer 3, analysis: what the representations and weights of encoders look like.

``features`` (pooled hidden states per layer, cached), ``cka`` and ``cka_study`` (linear CKA),
``cka_inference`` (its bootstrap intervals and permutation null), ``separability`` (language
ID, translation retrieval, mutual k-NN), ``paired_bootstrap`` (paired differences, Holm),
``svd`` (singular values of weight matrices).
Imports ``mtnb.core``, ``mtnb.data`` and ``mtnb.models``.
"""
