"""The e5 family's heads: what continued pretraining puts on top of multilingual-e5-small.

``MaskedLMHead`` (masked LM) and ``Decoder`` (translation) predict pieces of the corpus's output
vocabulary through one output layer (``output_logits``) whose rows are e5's own embeddings of
those pieces, fixed; alignment has no head (``info_nce`` on mean-pooled encodings).
``Continued`` is the e5 encoder with one head and its objective's loss.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from mtnb.core.machine import cpu_has_native_bf16


@functools.cache
def bf16_products() -> bool:
    """Whether the output layer's product runs in bfloat16: on a CPU with native bf16
    instructions (``mtnb.core.machine.cpu_has_native_bf16``: AVX512-BF16 or AMX), where it was 2.8x
    faster than float32 at (1000 x 384) x (384 x 28k); not on one without (AVX2), where oneDNN
    emulates bf16 and the same product ran at 0.15x float32's speed (1.38 s against 0.20 s)."""
    return cpu_has_native_bf16()


def output_logits(hidden, words_bf16, bias):
    """The output layer of both heads: hidden (..., d) against the fixed rows E' (V', d), as
    h E'^T + b -> (..., V'), float32. E' is stored in bfloat16; the product runs in bfloat16
    (accumulated in float32 by oneDNN) where the CPU has native bf16 (``bf16_products``), else
    in float32 over the same bf16-rounded rows. It is most of a step's time. The loss that
    follows is taken in float32."""
    if bf16_products():
        return (hidden.to(torch.bfloat16) @ words_bf16.T).float() + bias
    return hidden.float() @ words_bf16.float().T + bias


class MaskedLMHead(nn.Module):
    """One pre-norm Transformer encoder layer over the encoder's states, then
    logits = LayerNorm(GELU(W x)) E'^T + b over the V' kept pieces at the chosen positions;
    E' (V', d) is e5's rows of those pieces, fixed. Its capacity matches the decoder's (one
    Transformer layer and the same output layer): with a dense layer alone, the encoder's
    top layer did the head's work and lost most of me5-small's transfer.
    forward: (states (batch, n, d), padding (batch, n), chosen (batch, n) bool) ->
    logits (chosen, V') (see ``output_logits``)."""

    def __init__(self, embeddings: torch.Tensor, heads: int):
        super().__init__()
        d = embeddings.shape[1]
        self.block = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.1, batch_first=True, norm_first=True)
        self.dense, self.norm = nn.Linear(d, d), nn.LayerNorm(d)
        self.register_buffer("words_bf16", embeddings.to(torch.bfloat16))
        self.bias = nn.Parameter(torch.zeros(len(embeddings)))

    def forward(self, states, padding, chosen):
        x = self.block(states, src_key_padding_mask=padding)[chosen]
        return output_logits(self.norm(nn.functional.gelu(self.dense(x))), self.words_bf16, self.bias)


class Decoder(nn.Module):
    """A pre-norm Transformer decoder over the output vocabulary. Input and output vectors
    of the V' kept pieces are e5's rows, fixed (``words``, (V', d)); the ``n_langs``
    language tokens (ids V'..V'+n_langs-1, input only) and the positions are learned, started
    at std 0.02 (e5's own position rows have norm ~0.5; PyTorch's N(0, 1) default gives
    ~19.6 and drowns a token's identity). The memory is standardized per dimension with
    ``memory_mean``, ``memory_scale`` (d,), set by ``standardize``.
    forward: (tokens (batch, m), memory (batch, n, d), memory padding (batch, n)) -> hidden
    states (batch, m, d); ``logits``: (..., d) -> (..., V')."""

    def __init__(self, embeddings: torch.Tensor, n_langs: int, layers: int, heads: int, max_length: int):
        super().__init__()
        d = embeddings.shape[1]
        self.register_buffer("words", embeddings.clone())
        self.register_buffer("words_bf16", embeddings.to(torch.bfloat16))
        self.register_buffer("memory_mean", torch.zeros(d))
        self.register_buffer("memory_scale", torch.ones(d))
        self.langs = nn.Parameter(0.02 * torch.randn(n_langs, d))
        self.positions = nn.Parameter(0.02 * torch.randn(max_length + 2, d))
        layer = nn.TransformerDecoderLayer(d, heads, 4 * d, dropout=0.1, batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(d))
        self.bias = nn.Parameter(torch.zeros(len(embeddings)))

    def standardize(self, states: torch.Tensor) -> None:
        """Fix mu and sigma from encoder states (tokens, d): mean and standard deviation of
        each dimension over the tokens."""
        self.memory_mean.copy_(states.mean(0))
        self.memory_scale.copy_(states.std(0).clamp_min(1e-6))

    def embed(self, tokens):
        """Input vectors of output ids (batch, m) -> (batch, m, d): a kept piece's e5 row,
        or a language token's learned row."""
        n_words = len(self.words)
        word = self.words[tokens.clamp(max=n_words - 1)]
        lang = self.langs[(tokens - n_words).clamp(min=0)]
        return torch.where((tokens >= n_words)[..., None], lang, word)

    def forward(self, tokens, memory, memory_padding):
        m = tokens.shape[1]
        x = self.embed(tokens) + self.positions[:m]
        memory = (memory - self.memory_mean) / self.memory_scale
        # True = may not attend; padding sits after a target's last token, so the causal
        # mask alone keeps it out of every real position
        causal = torch.triu(torch.ones(m, m, dtype=torch.bool), diagonal=1)
        return self.layers(x, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=memory_padding)

    def logits(self, hidden):
        return output_logits(hidden, self.words_bf16, self.bias)

    # Incremental decoding (eval mode): position t is computed from the keys and values
    # the earlier positions left in a cache, so writing m tokens costs O(m) layer passes of
    # one token instead of forward()'s O(m^2) token passes. Per layer (pre-norm):
    #   x += SelfAttn(q = W_q LN1(x_t); K, V = W_k, W_v LN1(x_<=t))
    #   x += CrossAttn(q = W_q LN2(x_t); K, V = W_k, W_v memory)   (K, V computed once)
    #   x += W_2 relu(W_1 LN3(x_t))
    # step(...) equals logits(forward(tokens[:, :t+1], ...)[:, -1]) (a test checks it).

    def start(self, memory, memory_padding) -> list[dict]:
        """The cache for decoding from ``memory`` (batch, n, d): per layer, the cross-attention
        keys and values (batch, heads, n, d/heads) and empty self-attention ones."""
        memory = (memory - self.memory_mean) / self.memory_scale
        cache = []
        for layer in self.layers.layers:
            attn = layer.multihead_attn
            d = attn.embed_dim
            k, v = nn.functional.linear(memory, attn.in_proj_weight[d:], attn.in_proj_bias[d:]).chunk(2, -1)
            cache.append({"mk": self._heads(k, attn), "mv": self._heads(v, attn),
                          "mask": ~memory_padding[:, None, None, :], "k": None, "v": None})
        return cache

    def step(self, token, t: int, cache: list[dict]):
        """Logits (batch, V') for the token after ``token`` (batch,), which sits at position
        ``t``; appends this position's self-attention keys and values to ``cache``."""
        x = (self.embed(token) + self.positions[t])[:, None]          # (batch, 1, d)
        for layer, c in zip(self.layers.layers, cache):
            attn = layer.self_attn
            q, k, v = (self._heads(a, attn) for a in
                       nn.functional.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, -1))
            c["k"] = k if c["k"] is None else torch.cat([c["k"], k], dim=2)
            c["v"] = v if c["v"] is None else torch.cat([c["v"], v], dim=2)
            x = x + attn.out_proj(self._merge(nn.functional.scaled_dot_product_attention(q, c["k"], c["v"])))
            attn = layer.multihead_attn
            d = attn.embed_dim
            q = self._heads(nn.functional.linear(layer.norm2(x), attn.in_proj_weight[:d], attn.in_proj_bias[:d]), attn)
            x = x + attn.out_proj(self._merge(
                nn.functional.scaled_dot_product_attention(q, c["mk"], c["mv"], attn_mask=c["mask"])))
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm3(x))))
        return self.logits(self.layers.norm(x[:, 0]))

    @staticmethod
    def _heads(x, attn):
        """(batch, m, d) -> (batch, heads, m, d/heads)"""
        return x.unflatten(-1, (attn.num_heads, -1)).transpose(1, 2)

    @staticmethod
    def _merge(x):
        """(batch, heads, m, d/heads) -> (batch, m, d)"""
        return x.transpose(1, 2).flatten(2)


def mean_pool(states, attention_mask):
    """Mean of the real tokens' states: (batch, n, d), (batch, n) -> (batch, d)."""
    mask = attention_mask[..., None].to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp_min(1)


def info_nce(states, attention_mask, temperature: float):
    """Symmetric in-batch InfoNCE over 2B sequences whose rows i and B + i are translations:
    with u_i, v_i the L2-normalised mean-pooled encodings and S = u v^T / temperature (B, B),
    the mean of cross-entropy(S, diag) and cross-entropy(S^T, diag). The pooling and S are
    computed in float32 under any autocast."""
    pooled = torch.nn.functional.normalize(mean_pool(states.float(), attention_mask), dim=-1)
    u, v = pooled.chunk(2)
    with torch.autocast(u.device.type, enabled=False):  # a bf16 cosine (3 digits) / 0.05 would err by ~0.1
        scores = u @ v.T / temperature
    target = torch.arange(len(u))
    return (torch.nn.functional.cross_entropy(scores, target) + torch.nn.functional.cross_entropy(scores.T, target)) / 2


class Continued(nn.Module):
    """The e5 encoder and one head (None for alignment). ``head_loss(memory, batch)`` is the
    objective's mean loss from encoder states (batch, n, d); ``forward(batch)`` encodes the
    batch first."""

    def __init__(self, encoder, head, objective: str, temperature: float = 0.05):
        super().__init__()
        self.encoder, self.head, self.objective, self.temperature = encoder, head, objective, temperature

    def encode(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def head_loss(self, memory, batch):
        if self.objective == "align":
            return info_nce(memory, batch["attention_mask"], self.temperature)
        chosen = batch["labels"] != -100
        if self.objective == "mlm":  # the output layer at the ~15% chosen positions only: (chosen, V')
            return nn.functional.cross_entropy(self.head(memory, batch["attention_mask"] == 0, chosen),
                                               batch["labels"][chosen])
        hidden = self.head(batch["decoder_input_ids"], memory, batch["attention_mask"] == 0)
        return nn.functional.cross_entropy(self.head.logits(hidden[chosen]), batch["labels"][chosen])

    def forward(self, batch):
        return self.head_loss(self.encode(batch["input_ids"], batch["attention_mask"]), batch)
