"""Layer 3, pretraining: continuing or training language models before the transfer study.

``members`` (the catalogues of the mini zoo and the e5 family; no torch), ``vocab``,
``zoo`` (the mini zoo, trained from scratch), ``e5_family`` (multilingual-e5-small continued
on masked LM, translation and alignment), ``heads`` (their torch modules).
Imports ``mtnb.core``, ``mtnb.data`` and ``mtnb.models``.
"""
