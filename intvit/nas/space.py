"""Search spaces: the choices of every factor of a ViT that a supernet holds and a search picks
from (AutoFormer, seed 004; MCUFormer's hypernetwork space B.2, seed 000).

Factors: the embedding dim (one for the whole network), the depth (the first L blocks), per
block the number of heads (the attention dim is ``heads * head_dim``, AutoFormer's q-k-v
dim) and the MLP ratio, and optionally MCUFormer's low-rank ratio (one for the whole network:
every linear factorized at rank ``round(ratio * min(in, out))``). The patch size is fixed per
space (``patch_size``); see :mod:`intvit.nas.supernet` for why.

A space is a JSON file (``intvit/nas/spaces/*.json`` are shipped); a malformed or
out-of-range one gets a ``ValueError`` naming the file, the field and the value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from intvit.quant.arch import MAX_DEPTH, BlockArch, VitArch

SPACES_DIR = Path(__file__).parent / "spaces"


def _ints(name: str, values: object, lo: int = 1) -> tuple[int, ...]:
    if not isinstance(values, list | tuple) or not values:
        raise ValueError(f"{name} must be a non-empty list, got {values!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} has {v!r}; every choice must be an integer >= {lo}")
    return tuple(sorted(set(values)))


def _floats(name: str, values: object, lo: float, hi: float) -> tuple[float, ...]:
    if not isinstance(values, list | tuple) or not values:
        raise ValueError(f"{name} must be a non-empty list, got {values!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo < v <= hi:
            raise ValueError(f"{name} has {v!r}; every choice must be a number in ({lo}, {hi}]")
    return tuple(sorted({float(v) for v in values}))


@dataclass(frozen=True)
class SubnetChoice:
    """One subnet: the factor values a search picks (``rank_ratio`` None: full-rank)."""

    embed_dim: int
    heads: tuple[int, ...]  # per block; the depth is its length
    mlp_ratio: tuple[float, ...]
    rank_ratio: float | None = None

    @property
    def depth(self) -> int:
        return len(self.heads)

    def key(self) -> str:
        """A stable text key (the cache key of measurements; not Python's salted hash)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> SubnetChoice:
        return cls(
            int(d["embed_dim"]),
            tuple(int(h) for h in d["heads"]),
            tuple(float(r) for r in d["mlp_ratio"]),
            None if d.get("rank_ratio") is None else float(d["rank_ratio"]),
        )


@dataclass(frozen=True)
class SearchSpace:
    """Every factor's choices; the supernet's size is the largest of each."""

    name: str
    img_size: int
    patch_size: int
    in_chans: int
    num_classes: int
    embed_dim: tuple[int, ...]
    depth: tuple[int, ...]
    heads: tuple[int, ...]
    mlp_ratio: tuple[float, ...]
    head_dim: int = 64
    rank_ratio: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name in ("img_size", "patch_size", "in_chans", "num_classes", "head_dim"):
            _ints(name, [getattr(self, name)])
        if self.img_size % self.patch_size:
            raise ValueError(
                f"patch_size={self.patch_size} does not divide img_size={self.img_size}"
            )
        object.__setattr__(self, "embed_dim", _ints("embed_dim", self.embed_dim))
        object.__setattr__(self, "depth", _ints("depth", self.depth))
        if max(self.depth) > MAX_DEPTH:
            raise ValueError(f"depth {max(self.depth)} is more than the {MAX_DEPTH} allowed")
        object.__setattr__(self, "heads", _ints("heads", self.heads))
        object.__setattr__(self, "mlp_ratio", _floats("mlp_ratio", self.mlp_ratio, 0, 16))
        if self.rank_ratio:
            object.__setattr__(self, "rank_ratio", _floats("rank_ratio", self.rank_ratio, 0, 1))

    @property
    def max_depth(self) -> int:
        return max(self.depth)

    @property
    def max_embed(self) -> int:
        return max(self.embed_dim)

    @property
    def max_heads(self) -> int:
        return max(self.heads)

    @property
    def max_hidden(self) -> int:
        return hidden_width(self.max_embed, max(self.mlp_ratio))

    @property
    def max_attn(self) -> int:
        return self.max_heads * self.head_dim

    def size(self) -> int:
        """How many subnets the space holds."""
        per_block = len(self.heads) * len(self.mlp_ratio)
        total = sum(per_block**d for d in self.depth)
        return total * len(self.embed_dim) * max(1, len(self.rank_ratio))

    def sample(self, rng: np.random.Generator) -> SubnetChoice:
        """A subnet drawn uniformly factor by factor (AutoFormer: depth, then each block's
        heads and MLP ratio, the embedding dim; MCUFormer's rank ratio)."""
        depth = int(rng.choice(self.depth))
        return SubnetChoice(
            int(rng.choice(self.embed_dim)),
            tuple(int(rng.choice(self.heads)) for _ in range(depth)),
            tuple(float(rng.choice(self.mlp_ratio)) for _ in range(depth)),
            float(rng.choice(self.rank_ratio)) if self.rank_ratio else None,
        )

    def largest(self) -> SubnetChoice:
        depth = self.max_depth
        return SubnetChoice(
            self.max_embed,
            (self.max_heads,) * depth,
            (max(self.mlp_ratio),) * depth,
            max(self.rank_ratio) if self.rank_ratio else None,
        )

    def smallest(self) -> SubnetChoice:
        depth = min(self.depth)
        return SubnetChoice(
            min(self.embed_dim),
            (min(self.heads),) * depth,
            (min(self.mlp_ratio),) * depth,
            min(self.rank_ratio) if self.rank_ratio else None,
        )

    def contains(self, c: SubnetChoice) -> bool:
        return (
            c.embed_dim in self.embed_dim
            and c.depth in self.depth
            and all(h in self.heads for h in c.heads)
            and all(r in self.mlp_ratio for r in c.mlp_ratio)
            and len(c.mlp_ratio) == c.depth
            and (c.rank_ratio in self.rank_ratio if self.rank_ratio else c.rank_ratio is None)
        )

    def check(self, c: SubnetChoice) -> None:
        if not self.contains(c):
            raise ValueError(f"subnet {c.key()} is not in search space {self.name!r}")

    def arch(self, c: SubnetChoice) -> VitArch:
        """The :class:`VitArch` of subnet ``c`` (ranks from its ratio, at least 1)."""
        self.check(c)
        blocks = []
        for heads, ratio in zip(c.heads, c.mlp_ratio, strict=True):
            attn, hidden = heads * self.head_dim, hidden_width(c.embed_dim, ratio)
            ranks = {}
            if c.rank_ratio is not None:
                blk = BlockArch(heads, attn, hidden)
                for layer in ("qkv", "proj", "fc1", "fc2"):
                    lo = min(blk.linear_shape(layer, c.embed_dim))
                    ranks[f"{layer}_rank"] = max(1, min(lo, round(c.rank_ratio * lo)))
            blocks.append(BlockArch(heads, attn, hidden, **ranks))
        return VitArch(
            self.img_size,
            self.patch_size,
            self.in_chans,
            c.embed_dim,
            self.num_classes,
            tuple(blocks),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def hidden_width(dim: int, ratio: float) -> int:
    return max(1, round(dim * ratio))


def space_from_dict(data: object, where: str = "search space") -> SearchSpace:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(data).__name__}")
    names = {f.name for f in fields(SearchSpace)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
    from dataclasses import MISSING

    missing = [f.name for f in fields(SearchSpace) if f.default is MISSING and f.name not in data]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}")
    try:
        return SearchSpace(**data)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def shipped_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.json"))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A shipped space by name (``digits``, ``autoformer_t``, ...) or a space JSON file."""
    path = Path(name_or_path)
    if not path.is_file():
        shipped = SPACES_DIR / f"{name_or_path}.json"
        if not shipped.is_file():
            raise ValueError(
                f"search space {str(name_or_path)!r} is neither a file nor a shipped space "
                f"({', '.join(shipped_spaces())})"
            )
        path = shipped
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"search space {str(path)!r} is not JSON: {err}") from None
    if isinstance(data, dict):
        data.setdefault("name", path.stem)
    return space_from_dict(data, f"search space {str(path)!r}")
