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


def optimizer_and_schedule(model, config, total: int):
    """AdamW (no weight decay on biases and layer norms) and a LambdaLR with a linear warmup
    over ``config.warmup`` of ``total`` steps, then linear decay to 0. ``config``: anything with
    ``lr``, ``weight_decay`` and ``warmup`` (a fraction of the steps), e.g.
    ``mtnb.transfer.finetune.TrainConfig``."""
    warmup = max(1, int(config.warmup * total))
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if not any(k in n for k in NO_DECAY)], "weight_decay": config.weight_decay},
        {"params": [p for n, p in named if any(k in n for k in NO_DECAY)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.lr)
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
