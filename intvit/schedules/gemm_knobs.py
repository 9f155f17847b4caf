"""The knobs of a packed GEMM's schedule (:func:`intvit.schedules.gemm.apply_packed_gemm`),
what a tuning job searches per device.

Two kinds of knob, as MetaSchedule's design spaces are written:

- the **register tile**, rows x column vectors, is sampled (``sample_perfect_tile`` on the
  row-tile and column-tile loops, so every value divides the padded extents and the tuner's
  tile-size mutator can change it);
- the **layout**, which of the parallel splits (column tiles, row chunks, or both) and where
  the epilogue runs (on the register tile's accumulators, per column tile, or after the
  whole accumulation), changes the schedule's structure: each legal layout is one design
  space.

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


@dataclass(frozen=True)
class GemmLayout:
    """One design space of a packed GEMM's schedule (the structural knobs)."""

    split: Split = Split.COLUMNS
    epilogue: Epilogue = Epilogue.TOP
    #: row chunks of the ROWS and BOTH splits
    row_chunks: int = 1

    def __str__(self) -> str:
        chunks = f"x{self.row_chunks}" if self.split is not Split.COLUMNS else ""
        return f"{self.split.value}{chunks}/{self.epilogue.value}"

    @classmethod
    def parse(cls, text: str) -> GemmLayout:
        """The layout ``str(layout)`` names (ValueError naming the text otherwise)."""
        split_text, _, epilogue_text = text.partition("/")
        split_name, _, chunks = split_text.partition("x")
        try:
            return cls(Split(split_name), Epilogue(epilogue_text), int(chunks or 1))
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

    def __str__(self) -> str:
        return f"{self.m_tile}x{self.n_vectors} {self.layout}"


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


#: The root block annotation naming a scheduled GEMM's layout (``str(GemmLayout)``), in its
#: trace and so in every tuning record of it.
LAYOUT_ANNOTATION = "intvit.gemm_layout"

#: Row chunks of the ROWS and BOTH splits: what :func:`~intvit.topi.dense_packed.dense_packed`
#: pads a narrow GEMM's rows to.
ROW_CHUNKS = NARROW_ROW_CHUNKS


def legal_layouts(facts: GemmFacts) -> list[GemmLayout]:
    """The layouts that compute a GEMM with these facts exactly: a tiled epilogue only where
    its columns are whole tiles whatever the sampled tile (the padded width) and its rows one
    axis (TVM 0.27's ``reverse_compute_at`` infers a wrong row range otherwise; see
    :func:`intvit.schedules.gemm.column_epilogue`); the column-tile epilogue only under the
    column split; row chunks only for a dense GEMM run in parallel whose row blocks split
    evenly."""
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
    return layouts


def knobs_of_trace(trace, rows: int) -> GemmKnobs | None:
    """The knobs a packed GEMM schedule's trace (a tuning record's) applied, for a
    micro-kernel of ``rows`` rows per instruction: its layout annotation and its two sampled
    tiles (rows, then vectors); None for a trace that is not a packed GEMM schedule."""
    layout = None
    tiles = []
    for inst in trace.insts:
        kind = inst.kind.name
        if kind == "Annotate" and str(inst.attrs[0]) == LAYOUT_ANNOTATION:
            layout = GemmLayout.parse(str(inst.inputs[1]).strip('"'))
        elif kind == "SamplePerfectTile":
            tiles.append([int(x) for x in trace.decisions[inst]])
    if layout is None or len(tiles) != 2:
        return None
    return GemmKnobs(layout, tiles[0][-1] * rows, tiles[1][-1])
