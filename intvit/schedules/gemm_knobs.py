"""The knobs of a packed GEMM's schedule (:func:`intvit.schedules.gemm.apply_packed_gemm`),
what a tuning job searches per device.

Two kinds of knob, as MetaSchedule's design spaces are written:

- the **register tile**, rows x column vectors, is sampled (``sample_perfect_tile`` on the
  row-tile and column-tile loops, so every value divides the padded extents and the tuner's
  tile-size mutator can change it);
- the **layout**, which of the parallel splits (column tiles, row chunks, or both), where
  the epilogue runs (on the register tile's accumulators, per column tile, or after the
  whole accumulation) and whether K is blocked, changes the schedule's structure: each
  legal layout is one design space;
- the **K block** of a K-blocked layout, sampled like the tile: each column tile's weight
  panel is widened and swept one K block at a time across all its row tiles, so that a
  panel of ``K x lanes * n_vectors`` too large for L1 (DeiT-base's fc2, K = 3072, on a
  32 KiB L1) is reused from L1 block by block; the accumulators then stay in memory between
  blocks.

Every knob value computes the same integers: the tile and the split only reorder int32
additions that cannot overflow (see :mod:`intvit.topi.dense_packed`), and each layout is
offered only where TVM computes it correctly (:func:`legal_layouts`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from intvit.topi.dense_packed import NARROW_ROW_CHUNKS


class Split(enum.Enum):
    """What the parallel loop runs over."""

    COLUMNS = "columns"  # the column tiles (each thread widens its own weight panels)
    ROWS = "rows"  # chunks of row tiles, each chunk over every column tile
    BOTH = "both"  # chunks x column tiles fused into one parallel loop


class Epilogue(enum.Enum):
    """Where the epilogue (bias, requantization, residual) runs."""

    REGISTER = "register"  # per register tile, on the accumulators still in registers
    COLUMN = "column"  # per column tile, on accumulators still in L1
    TOP = "top"  # after the whole accumulation, parallel over the output rows


#: The suffix of a K-blocked layout's name.
K_BLOCKED = "kblocks"


@dataclass(frozen=True)
class GemmLayout:
    """One design space of a packed GEMM's schedule (the structural knobs)."""

    split: Split = Split.COLUMNS
    epilogue: Epilogue = Epilogue.TOP
    #: row chunks of the ROWS and BOTH splits
    row_chunks: int = 1
    #: K swept in blocks (their size sampled), each block across every row tile of a column
    #: tile
    k_blocked: bool = False

    def __str__(self) -> str:
        chunks = f"x{self.row_chunks}" if self.split is not Split.COLUMNS else ""
        blocked = f"/{K_BLOCKED}" if self.k_blocked else ""
        return f"{self.split.value}{chunks}/{self.epilogue.value}{blocked}"

    @classmethod
    def parse(cls, text: str) -> GemmLayout:
        """The layout ``str(layout)`` names (ValueError naming the text otherwise)."""
        parts = text.split("/")
        try:
            if len(parts) not in (2, 3) or parts[2:] not in ([], [K_BLOCKED]):
                raise ValueError(text)
            split_name, _, chunks = parts[0].partition("x")
            blocked = len(parts) == 3
            return cls(Split(split_name), Epilogue(parts[1]), int(chunks or 1), blocked)
        except ValueError:
            raise ValueError(f"not a GEMM layout: {text!r}") from None


@dataclass(frozen=True)
class GemmKnobs:
    """Every knob of one packed GEMM schedule: its layout and its register tile
    (``m_tile`` rows, a multiple of the micro-kernel's rows, x ``n_vectors`` blocks of its
    lanes)."""

    layout: GemmLayout
    m_tile: int
    n_vectors: int
    #: a K-blocked layout's block, in steps of the micro-kernel's ``kpack`` (None otherwise)
    k_block: int | None = None

    def __str__(self) -> str:
        blocks = "" if self.k_block is None else f" K-block {self.k_block} steps"
        return f"{self.m_tile}x{self.n_vectors} {self.layout}{blocks}"


@dataclass(frozen=True)
class GemmFacts:
    """What decides which layouts a packed GEMM may take, read from its unscheduled
    PrimFunc: ``grouped`` (a batch matmul: groups index the parallel loop), ``column_sums``
    (an offset operand's compensation, computed at the top level, so the epilogue stays
    there too), whether the epilogue is tileable (its columns the whole padded width and its
    rows one axis), the row- and column-block extents and whether the GEMM is big enough to
    run in parallel."""

    grouped: bool
    column_sums: bool
    tileable: bool
    row_blocks: int
    column_blocks: int
    parallel: bool
    #: the reduction's steps of the micro-kernel's ``kpack``: ``K / kpack``, padded
    k_steps: int = 1


#: The root block annotation naming a scheduled GEMM's layout (``str(GemmLayout)``), in its
#: trace and so in every tuning record of it.
LAYOUT_ANNOTATION = "intvit.gemm_layout"

#: The shortest K, in ``kpack`` steps (K = 256 for a 4-deep kernel), that a K-blocked layout
#: is offered for: below it a column tile's weight panel is a few KiB and fits any L1.
MIN_K_BLOCKED_STEPS = 64

#: Row chunks of the ROWS and BOTH splits: what :func:`~intvit.topi.dense_packed.dense_packed`
#: pads a narrow GEMM's rows to.
ROW_CHUNKS = NARROW_ROW_CHUNKS


def legal_layouts(facts: GemmFacts) -> list[GemmLayout]:
    """The layouts that compute a GEMM with these facts exactly: a tiled epilogue only where
    its columns are whole tiles whatever the sampled tile (the padded width) and its rows one
    axis (TVM 0.27's ``reverse_compute_at`` infers a wrong row range otherwise; see
    :func:`intvit.schedules.gemm.column_epilogue`); the column-tile epilogue only under the
    column split; row chunks only for a dense GEMM run in parallel whose row blocks split
    evenly; K blocking only for a dense GEMM of at least :data:`MIN_K_BLOCKED_STEPS` steps,
    with an epilogue after the whole of K (the accumulators are complete only then: not on
    the register tile)."""
    splits = [Split.COLUMNS]
    if facts.parallel and not facts.grouped and facts.row_blocks % ROW_CHUNKS == 0:
        splits += [Split.ROWS, Split.BOTH]
    layouts = []
    for split in splits:
        chunks = 1 if split is Split.COLUMNS else ROW_CHUNKS
        epilogues = [Epilogue.TOP]
        if facts.tileable and not facts.column_sums:
            epilogues.insert(0, Epilogue.REGISTER)
            if split is Split.COLUMNS:
                epilogues.insert(len(epilogues) - 1, Epilogue.COLUMN)
        layouts += [GemmLayout(split, e, chunks) for e in epilogues]
    if not facts.grouped and facts.k_steps >= MIN_K_BLOCKED_STEPS:
        layouts += [
            GemmLayout(lay.split, lay.epilogue, lay.row_chunks, k_blocked=True)
            for lay in list(layouts)
            if lay.epilogue is not Epilogue.REGISTER
        ]
    return layouts


def knobs_of_trace(trace, rows: int) -> GemmKnobs | None:
    """The knobs a packed GEMM schedule's trace (a tuning record's) applied, for a
    micro-kernel of ``rows`` rows per instruction: its layout annotation and its sampled
    tiles (rows, then vectors, then a K-blocked layout's K block); None for a trace that is
    not a packed GEMM schedule."""
    layout = None
    tiles = []
    for inst in trace.insts:
        kind = inst.kind.name
        if kind == "Annotate" and str(inst.attrs[0]) == LAYOUT_ANNOTATION:
            layout = GemmLayout.parse(str(inst.inputs[1]).strip('"'))
        elif kind == "SamplePerfectTile":
            tiles.append([int(x) for x in trace.decisions[inst]])
    if layout is None or len(tiles) != 2 + layout.k_blocked:
        return None
    k_block = tiles[2][-1] if layout.k_blocked else None
    return GemmKnobs(layout, tiles[0][-1] * rows, tiles[1][-1], k_block)
