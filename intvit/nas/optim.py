"""Lazy AdamW: AdamW that updates only the parameter elements a step's loss reached (a nonzero
gradient), moments included. A supernet step trains one sampled subnet; plain AdamW would keep
moving every other slice by its stale momentum and decay it, so "each step updates only its
subnet's slice" (AutoFormer's Algorithm 1) would not hold."""

from __future__ import annotations

import torch


class LazyAdamW(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05):
        if not lr > 0:
            raise ValueError(f"lr={lr} must be > 0")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                touched = g != 0
                if not touched.any():
                    continue
                state = self.state[p]
                if not state:
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                    state["t"] = torch.zeros_like(p)  # per-element step counts
                m, v, t = state["m"], state["v"], state["t"]
                t.add_(touched.to(t.dtype))
                m.copy_(torch.where(touched, b1 * m + (1 - b1) * g, m))
                v.copy_(torch.where(touched, b2 * v + (1 - b2) * g * g, v))
                tc = t.clamp(min=1)
                m_hat = m / (1 - b1**tc)
                v_hat = v / (1 - b2**tc)
                update = m_hat / (v_hat.sqrt() + group["eps"]) + group["weight_decay"] * p
                p.sub_(torch.where(touched, group["lr"] * update, torch.zeros_like(p)))
        return None
