"""Subnet extraction: the slices of a supernet (:mod:`intvit.nas.supernet`) copied into a
:class:`~intvit.models.hetero_vit.HeteroViT` of the subnet's arch (saved with
:func:`~intvit.models.hetero_vit.save_hetero_checkpoint`, it carries its arch, and
``intvit quantize`` takes it as it is)."""

from __future__ import annotations

import torch

from intvit.models.hetero_vit import HeteroViT
from intvit.nas.space import SubnetChoice
from intvit.nas.supernet import SuperLinear, Supernet, qkv_rows


def _copy_linear(dst, src: SuperLinear, rows, cols: int, rank: int | None) -> None:
    parts = src.slices(rows, cols, rank)
    if rank is None:
        dst.weight.copy_(parts[0])
        dst.bias.copy_(parts[1])
    else:
        dst.down.weight.copy_(parts[0])
        dst.up.weight.copy_(parts[1])
        dst.up.bias.copy_(parts[2])


@torch.no_grad()
def extract_subnet(supernet: Supernet, choice: SubnetChoice) -> HeteroViT:
    """The float model of ``choice`` with the supernet's weights, in eval mode."""
    arch = supernet.space.arch(choice)
    e = arch.dim
    model = HeteroViT(arch)
    model.patch_embed.proj.weight.copy_(supernet.patch_w[:e])
    model.patch_embed.proj.bias.copy_(supernet.patch_b[:e])
    model.cls_token.copy_(supernet.cls_token[:, :, :e])
    model.pos_embed.copy_(supernet.pos_embed[:, :, :e])
    for dst, src, blk in zip(model.blocks, supernet.blocks, arch.blocks, strict=False):
        dst.norm1.weight.copy_(src.norm1_w[:e])
        dst.norm1.bias.copy_(src.norm1_b[:e])
        dst.norm2.weight.copy_(src.norm2_w[:e])
        dst.norm2.bias.copy_(src.norm2_b[:e])
        rows = qkv_rows(blk.attn_dim, src.attn_max)
        _copy_linear(dst.attn.qkv, src.qkv, rows, e, blk.qkv_rank)
        _copy_linear(dst.attn.proj, src.proj, slice(0, e), blk.attn_dim, blk.proj_rank)
        _copy_linear(dst.mlp.fc1, src.fc1, slice(0, blk.mlp_hidden), e, blk.fc1_rank)
        _copy_linear(dst.mlp.fc2, src.fc2, slice(0, e), blk.mlp_hidden, blk.fc2_rank)
    model.norm.weight.copy_(supernet.norm_w[:e])
    model.norm.bias.copy_(supernet.norm_b[:e])
    _copy_linear(model.head, supernet.head, slice(None), e, None)
    return model.eval()
