"""Layer 1, data: texts and labels, and how they become model inputs.

``languages`` (ISO codes to mBART-50 and NLLB codes), ``tasks`` (the task table), ``xglue``
(XGLUE's parquet export), ``mini/`` (the offline LibreOffice corpus: build and load),
``loading`` (one loader for XGLUE and mini tasks), ``inputs`` (tokenised examples, batches).
Imports only ``mtnb.core``.
"""
