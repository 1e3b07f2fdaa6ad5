"""Layer 0, core: what every other layer needs and nothing of the study's own.

``errors`` (MtnbError, the one-line error), ``paths`` (the project root and its folders),
``yamlfile`` (safe YAML reading), ``files`` (atomic writes), ``precision`` (fp32, bf16, fp16
and autocast), ``hub_cache`` (the Hugging Face cache: what is in it and how to put files there).
"""
