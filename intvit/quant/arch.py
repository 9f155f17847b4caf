"""Typed architectures of the integer models: :class:`VitArch` (ViT/DeiT, with per-block heads,
attention dim, MLP width and optional low-rank linears) and :class:`SwinArch`.

An arch is validated when it is made (``ValueError`` naming the field and the value) and is
saved in the artifact as JSON with its ``version``; :func:`arch_from_dict` reads every version
this intvit wrote (version 1, the untyped dict of one ``dim``/``heads``/``mlp_hidden`` for
every block, is migrated).

Shapes of block ``i`` (``D = dim``, ``A = attn_dim``, ``H = mlp_hidden``): qkv ``D -> 3A``,
proj ``A -> D``, fc1 ``D -> H``, fc2 ``H -> D``. A linear with a rank ``r`` is two GEMMs,
``in -> r`` (no bias) then ``r -> out``, with an int8 requantization between them
(MCUFormer's low-rank factorization ``W = U V``, seed 000).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

ARCH_VERSION = 2
#: The per-block linears, in execution order.
LINEARS = ("qkv", "proj", "fc1", "fc2")


def _positive(where: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}{name}={value!r} must be a positive integer")
    return value


@dataclass(frozen=True)
class BlockArch:
    """One transformer block: ``heads`` dividing ``attn_dim``, the MLP's hidden width, and
    for each linear an optional rank (``None``: one full GEMM)."""

    heads: int
    attn_dim: int
    mlp_hidden: int
    qkv_rank: int | None = None
    proj_rank: int | None = None
    fc1_rank: int | None = None
    fc2_rank: int | None = None

    @property
    def head_dim(self) -> int:
        return self.attn_dim // self.heads

    def rank(self, layer: str) -> int | None:
        return getattr(self, f"{layer}_rank")

    def linear_shape(self, layer: str, dim: int) -> tuple[int, int]:
        """``(in, out)`` of ``layer`` in a block of embedding ``dim``."""
        return {
            "qkv": (dim, 3 * self.attn_dim),
            "proj": (self.attn_dim, dim),
            "fc1": (dim, self.mlp_hidden),
            "fc2": (self.mlp_hidden, dim),
        }[layer]

    def check(self, dim: int, where: str = "") -> None:
        """ValueError naming the field unless the block is valid in a model of ``dim``."""
        for name in ("heads", "attn_dim", "mlp_hidden"):
            _positive(where, name, getattr(self, name))
        if self.attn_dim % self.heads:
            raise ValueError(f"{where}heads={self.heads} does not divide attn_dim={self.attn_dim}")
        for layer in LINEARS:
            r = self.rank(layer)
            if r is None:
                continue
            _positive(where, f"{layer}_rank", r)
            lo = min(self.linear_shape(layer, dim))
            if r > lo:
                raise ValueError(f"{where}{layer}_rank={r} is above min(in, out) = {lo} of {layer}")

    @classmethod
    def from_dict(cls, data: dict, where: str = "") -> BlockArch:
        return cls(**_known(cls, data, where))


def _known(cls, data: object, where: str) -> dict:
    if not isinstance(data, dict):
        raise ValueError(f"{where}must be a JSON object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names - {"family", "version"})
    if unknown:
        raise ValueError(f"{where}unknown field(s) {', '.join(unknown)} for {cls.__name__}")
    return {k: v for k, v in data.items() if k in names}


def _check_image(img_size: int, patch_size: int, in_chans: int, num_classes: int) -> None:
    for name, value in (
        ("img_size", img_size),
        ("patch_size", patch_size),
        ("in_chans", in_chans),
        ("num_classes", num_classes),
    ):
        _positive("", name, value)
    if img_size % patch_size:
        raise ValueError(f"patch_size={patch_size} does not divide img_size={img_size}")


#: The deepest ViT intvit builds (the largest published ViTs have 48 blocks): a deeper arch
#: is a typo, refused before thousands of modules are made.
MAX_DEPTH = 1000


@dataclass(frozen=True)
class VitArch:
    """A ViT/DeiT: patch embedding to ``dim`` channels, ``prefix_tokens`` (the class token,
    and the distillation token of a distilled DeiT), one :class:`BlockArch` per block (the
    depth is their count), a final LayerNorm and the head(s)."""

    family: ClassVar[str] = "vit"

    img_size: int
    patch_size: int
    in_chans: int
    dim: int
    num_classes: int
    blocks: tuple[BlockArch, ...]
    prefix_tokens: int = 1
    distilled: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        _check_image(self.img_size, self.patch_size, self.in_chans, self.num_classes)
        _positive("", "dim", self.dim)
        if not self.blocks:
            raise ValueError("blocks is empty: a ViT needs depth >= 1")
        if len(self.blocks) > MAX_DEPTH:
            raise ValueError(
                f"depth {len(self.blocks)} is more than the {MAX_DEPTH} blocks allowed"
            )
        for i, blk in enumerate(self.blocks):
            if not isinstance(blk, BlockArch):
                raise ValueError(f"blocks[{i}] is a {type(blk).__name__}, not a BlockArch")
            blk.check(self.dim, f"blocks[{i}].")
        want = 2 if self.distilled else 1
        if self.prefix_tokens != want:
            raise ValueError(
                f"prefix_tokens={self.prefix_tokens!r}; a "
                f"{'distilled' if self.distilled else 'plain'} ViT has {want}"
            )

    @classmethod
    def uniform(
        cls,
        *,
        img_size: int,
        patch_size: int,
        in_chans: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_hidden: int,
        num_classes: int,
        distilled: bool = False,
    ) -> VitArch:
        """Every block alike, attention dim = ``dim`` (timm's ViT and DeiT)."""
        _positive("", "depth", depth)
        blk = BlockArch(heads, dim, mlp_hidden)
        return cls(
            img_size,
            patch_size,
            in_chans,
            dim,
            num_classes,
            (blk,) * depth,
            2 if distilled else 1,
            distilled,
        )

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    @property
    def tokens(self) -> int:
        return self.grid**2 + self.prefix_tokens

    def param_count(self) -> int:
        """Parameters of the float model: patch embedding, tokens and position embedding,
        per block two LayerNorms and four linears with bias (dense, or factorized at their
        rank), the final LayerNorm and the head(s)."""
        d, c = self.dim, self.num_classes
        total = d * self.in_chans * self.patch_size**2 + d + self.prefix_tokens * d
        total += self.tokens * d
        for blk in self.blocks:
            total += 4 * d
            for layer in ("qkv", "proj", "fc1", "fc2"):
                n_in, n_out = blk.linear_shape(layer, d)
                rank = blk.rank(layer)
                total += (n_in * n_out if rank is None else rank * (n_in + n_out)) + n_out
        return total + 2 * d + (2 if self.distilled else 1) * (c * d + c)

    @property
    def num_blocks(self) -> int:
        return self.depth

    @property
    def is_uniform(self) -> bool:
        """Every block alike with attention dim = dim and no low-rank linear (a timm ViT)."""
        first = self.blocks[0]
        return first.attn_dim == self.dim and all(
            b == BlockArch(first.heads, self.dim, first.mlp_hidden) for b in self.blocks
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blocks"] = [{k: v for k, v in asdict(b).items() if v is not None} for b in self.blocks]
        return {"family": self.family, "version": ARCH_VERSION, **d}

    @classmethod
    def from_dict(cls, data: dict) -> VitArch:
        kw = _known(cls, data, "arch: ")
        blocks = kw.get("blocks")
        if not isinstance(blocks, list):
            raise ValueError(f"arch: blocks must be a list, got {type(blocks).__name__}")
        kw["blocks"] = tuple(BlockArch.from_dict(b, f"blocks[{i}]: ") for i, b in enumerate(blocks))
        return cls(**kw)


@dataclass(frozen=True)
class SwinBlock:
    window: int
    shift: int


@dataclass(frozen=True)
class SwinStage:
    """One Swin stage: patch merging first (``merge``), then its blocks at ``dim`` channels on
    a ``grid x grid`` token map."""

    merge: bool
    dim: int
    grid: int
    heads: int
    mlp_hidden: int
    blocks: tuple[SwinBlock, ...]

    def block_arch(self) -> BlockArch:
        return BlockArch(self.heads, self.dim, self.mlp_hidden)


@dataclass(frozen=True)
class SwinArch:
    """A Swin transformer (timm's ``SwinTransformer``, average-pooled head)."""

    family: ClassVar[str] = "swin"
    distilled: ClassVar[bool] = False

    img_size: int
    patch_size: int
    in_chans: int
    embed_dim: int
    num_classes: int
    stages: tuple[SwinStage, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        _check_image(self.img_size, self.patch_size, self.in_chans, self.num_classes)
        if not self.stages:
            raise ValueError("stages is empty: a Swin needs at least one stage")
        for s, st in enumerate(self.stages):
            where = f"stages[{s}]."
            for name in ("dim", "grid", "heads", "mlp_hidden"):
                _positive(where, name, getattr(st, name))
            if st.dim % st.heads:
                raise ValueError(f"{where}heads={st.heads} does not divide dim={st.dim}")
            for b, blk in enumerate(st.blocks):
                if st.grid % blk.window:
                    raise ValueError(
                        f"{where}blocks[{b}].window={blk.window} does not divide grid={st.grid}"
                    )

    @property
    def num_blocks(self) -> int:
        return sum(len(st.blocks) for st in self.stages)

    def to_dict(self) -> dict:
        return {"family": self.family, "version": ARCH_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> SwinArch:
        kw = _known(cls, data, "arch: ")
        stages = []
        for s, st in enumerate(kw.get("stages") or []):
            st = _known(SwinStage, st, f"stages[{s}]: ")
            st["blocks"] = tuple(
                SwinBlock(**_known(SwinBlock, b, f"stages[{s}].blocks[{i}]: "))
                for i, b in enumerate(st.get("blocks") or [])
            )
            stages.append(SwinStage(**st))
        kw["stages"] = tuple(stages)
        return cls(**kw)


Arch = VitArch | SwinArch
ARCH_TYPES: dict[str, type] = {VitArch.family: VitArch, SwinArch.family: SwinArch}


def _migrate_v1(data: dict) -> dict:
    """Version 1 (intvit <= 0.1 artifacts): a ViT dict had one ``dim``, ``depth``, ``heads``
    and ``mlp_hidden`` for every block; a Swin dict had the fields it has now."""
    if data.get("family") == "vit":
        data = dict(data)
        try:
            depth, heads, hidden = data.pop("depth"), data.pop("heads"), data.pop("mlp_hidden")
        except KeyError as err:
            raise ValueError(f"arch (version 1) lacks {err.args[0]!r}") from None
        _positive("arch: ", "depth", depth)
        data["blocks"] = [{"heads": heads, "attn_dim": data.get("dim"), "mlp_hidden": hidden}]
        data["blocks"] *= depth
        return data
    return {k: v for k, v in data.items() if k != "distilled"}


def arch_from_dict(data: object) -> Arch:
    """The arch saved as ``data`` (any version this intvit wrote); ValueError naming what is
    wrong (an unknown family or version, a missing or invalid field)."""
    if not isinstance(data, dict):
        raise ValueError(f"arch must be a JSON object, got {type(data).__name__}")
    version = data.get("version", 1)
    if version not in (1, ARCH_VERSION):
        raise ValueError(f"arch version {version!r} is not one this intvit reads (1, 2)")
    family = data.get("family")
    if family not in ARCH_TYPES:
        raise ValueError(f"arch family {family!r} is unknown; known: {', '.join(ARCH_TYPES)}")
    if version == 1:
        data = _migrate_v1(data)
    try:
        return ARCH_TYPES[family].from_dict(data)
    except TypeError as err:  # a required field missing
        raise ValueError(f"arch ({family}) is incomplete: {err}") from None


def read_arch(path) -> Arch:
    """The arch in a JSON file (``VitArch.to_dict()`` form; ``family`` defaults to ``vit``);
    ValueError naming the file and what is wrong."""
    import json
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"arch file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"arch file {str(path)!r} is not JSON: {err}") from None
    if isinstance(data, dict):
        data = {"family": "vit", "version": ARCH_VERSION, **data}
    try:
        return arch_from_dict(data)
    except ValueError as err:
        raise ValueError(f"arch file {str(path)!r}: {err}") from None
