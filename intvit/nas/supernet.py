"""The weight-entangled supernet (AutoFormer's Algorithm 1, seed 004): one ViT at the largest
size of every factor of a :class:`~intvit.nas.space.SearchSpace`, whose subnets' weights are
its leading slices.

Slices, for a subnet of embedding dim ``E``, depth ``L``, per-block heads ``h`` (attention dim
``A = h * head_dim``) and MLP width ``H``:
- patch embedding, class token, position embedding, every LayerNorm, the head: the first
  ``E`` channels;
- the first ``L`` blocks;
- qkv: the leading ``A`` rows of each of the q, k and v blocks (each ``A_max`` rows) and the
  leading ``E`` columns, so a subnet's heads are the supernet's first ``h`` heads; proj ``[:E,
  :A]``; fc1 ``[:H, :E]``; fc2 ``[:E, :H]``;
- in a space with low-rank ratios every linear is factorized at the supernet's size (rank
  ``min(in_max, out_max)``), and a subnet at rank ``r`` takes the leading ``r`` rows of the
  first factor and the leading ``r`` columns of the second (MCUFormer's factorized linears,
  entangled the same way).

The patch size is one per space: a subnet with another patch size would need its own patch
embedding and position embedding (nothing in them is shared), which is a second network rather
than a slice; MCUFormer's "token size" factor is therefore left out (stated in the README).

:meth:`Supernet.forward` with a :class:`~intvit.nas.space.SubnetChoice` runs that subnet;
:func:`intvit.nas.extract.extract_subnet` copies the slices into a
:class:`~intvit.models.hetero_vit.HeteroViT` whose forward is the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from intvit.nas.space import SearchSpace, SubnetChoice

EPS = 1e-6


class SuperLinear(nn.Module):
    """A ``out_max x in_max`` linear, dense or (``low_rank``) as two factors of rank
    ``min(in_max, out_max)``. ``rows`` picks the output rows a subnet uses (a slice, or for
    qkv the leading rows of each of its three blocks)."""

    def __init__(self, in_max: int, out_max: int, low_rank: bool) -> None:
        super().__init__()
        self.in_max, self.out_max = in_max, out_max
        if low_rank:
            r = min(in_max, out_max)
            self.down = nn.Parameter(torch.empty(r, in_max))
            self.up = nn.Parameter(torch.empty(out_max, r))
            self.weight = None
        else:
            self.weight = nn.Parameter(torch.empty(out_max, in_max))
            self.down = self.up = None
        self.bias = nn.Parameter(torch.zeros(out_max))
        for p in (self.weight, self.down, self.up):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)

    def slices(self, rows, cols: int, rank: int | None):
        """``(weight, bias)`` of a dense subnet linear, or ``(down, up, bias)`` of a low-rank
        one (``rank`` given)."""
        if rank is None:
            if self.weight is None:
                raise ValueError("a low-rank supernet linear needs a rank")
            return self.weight[rows, :cols], self.bias[rows]
        return self.down[:rank, :cols], self.up[rows, :rank], self.bias[rows]

    def forward(self, x: torch.Tensor, rows, rank: int | None) -> torch.Tensor:
        parts = self.slices(rows, x.shape[-1], rank)
        if rank is None:
            return F.linear(x, *parts)
        down, up, bias = parts
        return F.linear(F.linear(x, down), up, bias)


def qkv_rows(attn: int, attn_max: int) -> torch.Tensor:
    """The qkv rows of a subnet with ``attn`` channels: the leading ``attn`` of each block."""
    return torch.cat([torch.arange(attn) + part * attn_max for part in range(3)])


class SuperBlock(nn.Module):
    def __init__(self, space: SearchSpace, low_rank: bool) -> None:
        super().__init__()
        e, a, h = space.max_embed, space.max_attn, space.max_hidden
        self.head_dim, self.attn_max = space.head_dim, a
        self.norm1_w, self.norm1_b = nn.Parameter(torch.ones(e)), nn.Parameter(torch.zeros(e))
        self.norm2_w, self.norm2_b = nn.Parameter(torch.ones(e)), nn.Parameter(torch.zeros(e))
        self.qkv = SuperLinear(e, 3 * a, low_rank)
        self.proj = SuperLinear(a, e, low_rank)
        self.fc1 = SuperLinear(e, h, low_rank)
        self.fc2 = SuperLinear(h, e, low_rank)

    def forward(self, x: torch.Tensor, blk) -> torch.Tensor:
        b, n, e = x.shape
        heads, d = blk.heads, self.head_dim
        a = heads * d
        h = F.layer_norm(x, (e,), self.norm1_w[:e], self.norm1_b[:e], EPS)
        qkv = self.qkv(h, qkv_rows(a, self.attn_max), blk.qkv_rank)
        qkv = qkv.reshape(b, n, 3, heads, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q * d**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        ctx = (attn @ v).transpose(1, 2).reshape(b, n, a)
        x = x + self.proj(ctx, slice(0, e), blk.proj_rank)
        h = F.layer_norm(x, (e,), self.norm2_w[:e], self.norm2_b[:e], EPS)
        hidden = F.gelu(self.fc1(h, slice(0, blk.mlp_hidden), blk.fc1_rank))
        return x + self.fc2(hidden, slice(0, e), blk.fc2_rank)


class Supernet(nn.Module):
    """The supernet of ``space`` (see the module docstring)."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        from intvit.models.size import check_fits_memory

        largest = space.arch(space.largest())  # the supernet holds its weights
        check_fits_memory(largest.param_count(), f"the supernet of space {space.name!r}")
        self.space = space
        e, p = space.max_embed, space.patch_size
        tokens = (space.img_size // p) ** 2 + 1
        low_rank = bool(space.rank_ratio)
        self.patch_w = nn.Parameter(torch.empty(e, space.in_chans, p, p))
        self.patch_b = nn.Parameter(torch.zeros(e))
        nn.init.trunc_normal_(self.patch_w, std=0.02)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, e))
        nn.init.normal_(self.cls_token, std=1e-6)
        self.pos_embed = nn.Parameter(torch.empty(1, tokens, e))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(SuperBlock(space, low_rank) for _ in range(space.max_depth))
        self.norm_w, self.norm_b = nn.Parameter(torch.ones(e)), nn.Parameter(torch.zeros(e))
        self.head = SuperLinear(e, space.num_classes, low_rank=False)

    def forward(self, x: torch.Tensor, choice: SubnetChoice) -> torch.Tensor:
        arch = self.space.arch(choice)
        e = arch.dim
        h = F.conv2d(x, self.patch_w[:e], self.patch_b[:e], stride=self.space.patch_size)
        h = h.flatten(2).transpose(1, 2)
        cls = self.cls_token[:, :, :e].expand(x.shape[0], -1, -1)
        h = torch.cat([cls, h], dim=1) + self.pos_embed[:, :, :e]
        for block, blk in zip(self.blocks, arch.blocks, strict=False):
            h = block(h, blk)
        h = F.layer_norm(h, (e,), self.norm_w[:e], self.norm_b[:e], EPS)
        return self.head(h[:, 0], slice(None), None)
