"""A float ViT for any :class:`~intvit.quant.arch.VitArch`: per-block heads, attention dim and
MLP width, and low-rank linears (two ``nn.Linear``: ``in -> r`` without bias, then ``r ->
out``), with timm's attribute names (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``blocks[i].norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2``, ``norm``, ``head``),
so calibration, the GELU-less distillation and the shadow forward treat it as they treat timm.

Its checkpoint (:func:`save_hetero_checkpoint`) is ``{"model": state_dict, "intvit": {"arch":
arch.to_dict(), ...}}``: :func:`load_hetero_checkpoint` rebuilds the model from it alone.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from intvit.models.gelu_less import META_KEY
from intvit.models.state import check_state_fits
from intvit.paths import torch_save_atomic
from intvit.quant.arch import BlockArch, VitArch, arch_from_dict


class LowRankLinear(nn.Module):
    """``y = up(down(x))``: ``in -> rank`` (no bias) then ``rank -> out`` (MCUFormer's
    factorized linear, seed 000)."""

    def __init__(self, in_features: int, out_features: int, rank: int) -> None:
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features)

    @property
    def bias(self) -> nn.Parameter:
        return self.up.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


def make_linear(in_features: int, out_features: int, rank: int | None) -> nn.Module:
    if rank is None:
        return nn.Linear(in_features, out_features)
    return LowRankLinear(in_features, out_features, rank)


class Attention(nn.Module):
    def __init__(self, dim: int, blk: BlockArch) -> None:
        super().__init__()
        self.num_heads, self.attn_dim = blk.heads, blk.attn_dim
        self.head_dim = blk.head_dim
        self.scale = self.head_dim**-0.5
        self.qkv = make_linear(dim, 3 * blk.attn_dim, blk.qkv_rank)
        self.proj = make_linear(blk.attn_dim, dim, blk.proj_rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, self.attn_dim)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, blk: BlockArch) -> None:
        super().__init__()
        self.fc1 = make_linear(dim, blk.mlp_hidden, blk.fc1_rank)
        self.act = nn.GELU()
        self.fc2 = make_linear(blk.mlp_hidden, dim, blk.fc2_rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, blk: BlockArch) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, blk)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, blk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class HeteroViT(nn.Module):
    """The float ViT of ``arch`` (class token, learned position embedding, pre-norm blocks,
    final LayerNorm, linear head on the class token; a distilled arch adds DeiT's
    distillation token and head, averaged in eval mode)."""

    def __init__(self, arch: VitArch) -> None:
        super().__init__()
        from timm.layers import PatchEmbed, trunc_normal_

        from intvit.models.size import check_fits_memory

        check_fits_memory(arch.param_count(), "the arch")  # before anything is allocated
        self.arch = arch
        self.embed_dim = arch.dim
        self.num_classes = arch.num_classes
        self.num_prefix_tokens = arch.prefix_tokens
        self.patch_embed = PatchEmbed(arch.img_size, arch.patch_size, arch.in_chans, arch.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, arch.dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, arch.dim)) if arch.distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, arch.tokens, arch.dim))
        self.blocks = nn.ModuleList(Block(arch.dim, b) for b in arch.blocks)
        self.norm = nn.LayerNorm(arch.dim, eps=1e-6)
        self.head = nn.Linear(arch.dim, arch.num_classes)
        if arch.distilled:
            self.head_dist = nn.Linear(arch.dim, arch.num_classes)
        trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.dist_token is not None:
            trunc_normal_(self.dist_token, std=0.02)
        self.apply(_init_weights)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        prefix = [self.cls_token.expand(b, -1, -1)]
        if self.dist_token is not None:
            prefix.append(self.dist_token.expand(b, -1, -1))
        return torch.cat([*prefix, self.patch_embed(x)], dim=1) + self.pos_embed

    def forward(self, x: torch.Tensor):
        h = self.tokens(x)
        for blk in self.blocks:
            h = blk(h)
        h = self.norm(h)
        logits = self.head(h[:, 0])
        if self.dist_token is None:
            return logits
        dist = self.head_dist(h[:, 1])
        return (logits, dist) if self.training else (logits + dist) / 2


def _init_weights(m: nn.Module) -> None:
    from timm.layers import trunc_normal_

    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def save_hetero_checkpoint(model: HeteroViT, path: str | Path, **meta) -> Path:
    """Write ``model`` with its arch (and ``meta``) atomically to ``path``."""
    body = {"model": model.state_dict(), META_KEY: {"arch": model.arch.to_dict(), **meta}}
    return torch_save_atomic(body, path)


def checkpoint_arch(state: object) -> VitArch | None:
    """The arch a loaded checkpoint carries (None for a plain state dict)."""
    meta = state.get(META_KEY, {}) if isinstance(state, dict) else {}
    if not isinstance(meta, dict) or "arch" not in meta:
        return None
    arch = arch_from_dict(meta["arch"])
    if not isinstance(arch, VitArch):
        raise ValueError(f"a {arch.family} arch in a ViT checkpoint")
    return arch


def load_hetero_checkpoint(path: str | Path) -> HeteroViT:
    """The float model of a checkpoint that carries its arch, in eval mode; ValueError when the
    file is not one, or when its tensors do not fit its arch."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip or format errors all mean the same to a user
        raise ValueError(f"checkpoint {str(path)!r} is not a PyTorch checkpoint: {err}") from None
    try:
        arch = checkpoint_arch(state)
    except ValueError as err:
        raise ValueError(f"checkpoint {str(path)!r}: {err}") from None
    if arch is None:
        raise ValueError(f"checkpoint {str(path)!r} carries no intvit arch")
    weights = state.get("model")
    if not isinstance(weights, dict):
        raise ValueError(f"checkpoint {str(path)!r} holds no state dict under 'model'")
    model = HeteroViT(arch)
    relu = state[META_KEY].get("relu_blocks", [])
    if relu:
        from intvit.models.gelu_less import apply_relu_blocks

        apply_relu_blocks(model, relu)
    check_state_fits(model, weights, f"checkpoint {str(path)!r} does not fit its arch")
    model.load_state_dict(weights)
    return model.eval()


def checkpoint_meta(path: str | Path) -> dict:
    """The intvit metadata of a checkpoint file that carries its arch (``{}`` for anything
    else: a model name, a plain state dict, a file that is no checkpoint)."""
    path = Path(path)
    if not path.is_file() or path.suffix not in (".pt", ".pth", ".ckpt"):
        return {}
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a checkpoint at all: the caller treats it as a model name
        return {}
    meta = state.get(META_KEY, {}) if isinstance(state, dict) else {}
    return meta if isinstance(meta, dict) and "arch" in meta else {}


def is_hetero_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint file that carries its arch."""
    return bool(checkpoint_meta(path))


#: Architectures shipped with intvit (``intvit/models/archs/<name>.json``).
ARCHS_DIR = Path(__file__).parent / "archs"


def shipped_archs() -> list[str]:
    return sorted(p.stem for p in ARCHS_DIR.glob("*.json"))


def resolve_arch(name_or_path: str | Path) -> VitArch:
    """A shipped arch by name (``digits_odd``, ...) or an arch JSON file."""
    from intvit.quant.arch import read_arch

    path = Path(name_or_path)
    if not path.is_file() and (ARCHS_DIR / f"{name_or_path}.json").is_file():
        path = ARCHS_DIR / f"{name_or_path}.json"
    elif not path.is_file():
        raise ValueError(
            f"{str(name_or_path)!r} is neither an arch file nor a shipped arch "
            f"({', '.join(shipped_archs())})"
        )
    arch = read_arch(path)
    if not isinstance(arch, VitArch):
        raise ValueError(f"{str(path)!r} holds a {arch.family} arch; a ViT arch is needed")
    return arch
