"""The pieces every training loop of the study shares: seeding, AdamW with linear warm-up and
decay, and one optimiser step with gradient clipping (and loss scaling for fp16).
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU runs are then repeatable)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def linear_schedule(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: 0 -> 1 over ``warmup`` steps, then 1 -> 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "layernorm", "norm.weight")


def adamw_loop(fused: bool) -> dict:
    """How AdamW loops over its tensors (keyword arguments of ``torch.optim.AdamW``): the fused
    kernel for low-precision runs, ``foreach`` for fp32 runs (bit-identical to the per-tensor
    loop); see ``optimizer_and_schedule`` for the measurements behind the choice."""
    return {"fused": True} if fused else {"foreach": True}


def optimizer_and_schedule(model, config, total: int, *, fused: bool = False):
    """AdamW (no weight decay on biases and layer norms) and a LambdaLR with a linear warmup
    over ``config.warmup`` of ``total`` steps, then linear decay to 0. ``config``: anything with
    ``lr``, ``weight_decay`` and ``warmup`` (a fraction of the steps), e.g.
    ``mtnb.transfer.finetune.TrainConfig``.

    The update is the same in every variant,

        m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g²,   w <- w (1 - lr λ)
        w <- w - lr / (1 - b1^t) · m / (sqrt(v) / sqrt(1 - b2^t) + eps),

    and only how torch loops over the tensors differs:

    - ``fused=False`` (the default; for fp32 runs): ``foreach=True``, one call per operation
      over the list of tensors, bit-identical to the per-tensor loop that torch takes on a CPU
      by default (``tests/test_finetune.py`` checks it), so a seed gives the numbers it gave;
    - ``fused=True`` (for bf16 and fp16 runs): one kernel that reads and writes each element
      once instead of once per operation. The 250k x 384 word embeddings make most of a
      fine-tuning step's optimizer time, so on e5-small (batch of 16 paragraphs, 1 thread,
      issue 30, load average 1.6-2 on 2 cores) a whole step ran 1.83x as fast at bf16 and 1.60x
      at fp32 as with the per-tensor loop (foreach: 1.07x and 1.10x). Its arithmetic rounds differently, and Adam's division
      by sqrt(v) carries that into the weights: after 30 steps of a 2-layer BERT (the test) its
      parameters were up to 1e-5 of a tensor's largest value apart from the loop's, its logits
      4e-7 of theirs, with the same predictions. bf16's own rounding (about 4e-3 per product)
      moves the numbers far more, so low-precision runs take the fused kernel, while fp32 keeps
      the bit-identical foreach.
    """
    warmup = max(1, int(config.warmup * total))
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if not any(k in n for k in NO_DECAY)], "weight_decay": config.weight_decay},
        {"params": [p for n, p in named if any(k in n for k in NO_DECAY)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, **adamw_loop(fused))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, total, warmup))
    return optimizer, scheduler


def optimizer_step(model, optimizer, scheduler, loss, scaler=None) -> None:
    """Backpropagate ``loss``, clip the gradient norm to 1, step the optimizer and schedule.
    ``scaler`` (fp16: ``mtnb.core.precision.grad_scaler``) scales the loss before backpropagating
    and unscales the gradients before clipping; it skips a step whose gradients overflowed."""
    if scaler is None:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
