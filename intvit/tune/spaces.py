"""Which design space and search strategy each task of a tuning job gets.

Packed GEMMs (dense and attention's batch matmuls) get intvit's own design spaces
(:func:`intvit.schedules.gemm.packed_gemm_space`): one per legal layout, the register tile
(and a K-blocked layout's K block) sampled with ``sample_perfect_tile``, searched by
MetaSchedule's evolutionary search with its tile-size mutator and XGBoost cost model; fused
low-rank linears likewise (:func:`intvit.schedules.low_rank.low_rank_space`: their two
register tiles). Such a space is a few thousand points at most, so its population is small.
Every other kernel keeps MetaSchedule's generic space (``post-order-apply`` with the
target's schedule rules).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import tvm

from intvit.schedules.gemm import default_gemm_schedule, packed_gemm_space
from intvit.schedules.intrinsics import gemm_kernels_for, kernel_of_func
from intvit.schedules.low_rank import low_rank_schedule, low_rank_space
from intvit.schedules.model import low_rank_kernels
from intvit.schedules.rowwise import rowwise_schedule
from intvit.topi.kinds import LOW_RANK_GEMM, PACKED_GEMM, ROW_KINDS, kernel_kind

#: The evolutionary search's population for a packed GEMM's design spaces.
GEMM_POPULATION = 64

#: The evolutionary search for every other kernel (MetaSchedule's generic space): its
#: default (population 512, 4 generations) spent 4 minutes of a 2-core host choosing each
#: batch of 16 candidates for DeiT-tiny's LayerNorm, longer than measuring them; a quarter of
#: the population over 2 generations chooses one in about 30 s.
GENERIC_POPULATION = 128
GENERIC_GENERATIONS = 2


@dataclass(frozen=True)
class KnobbedKind:
    """A kind of kernel with intvit's own design space: ``space(func, kernels, parallel)``
    gives its ``ScheduleFn`` generator, ``default(func, kernels, parallel)`` its hand-chosen
    schedule with the trace (one point of that space)."""

    space: Callable
    default: Callable


#: The kernel kinds whose knobs a tuning job searches in intvit's design spaces.
KNOBBED: dict[str, KnobbedKind] = {
    PACKED_GEMM: KnobbedKind(
        space=lambda f, ks, par: packed_gemm_space(kernel_of_func(f, ks), par),
        default=lambda f, ks, par: default_gemm_schedule(f, kernel_of_func(f, ks), par),
    ),
    LOW_RANK_GEMM: KnobbedKind(
        space=lambda f, ks, par: low_rank_space(*low_rank_kernels(f, ks), par),
        default=lambda f, ks, par: low_rank_schedule(f, *low_rank_kernels(f, ks), par),
    ),
}


@dataclass(frozen=True)
class TaskSpace:
    """A task's design space generator and search strategy (MetaSchedule objects, or the
    names MetaSchedule takes for its defaults)."""

    space: object
    strategy: object


def task_space(func: tvm.tirx.PrimFunc, target: dict, cores: int) -> TaskSpace:
    """The design space of the kernel ``func`` for a job on ``target`` (a preset's dict)."""
    from tvm.s_tir import meta_schedule as ms

    knobbed = KNOBBED.get(kernel_kind(func))
    if knobbed is None:
        generic = ms.search_strategy.EvolutionarySearch(
            population_size=GENERIC_POPULATION, genetic_num_iters=GENERIC_GENERATIONS
        )
        return TaskSpace("post-order-apply", generic)
    space = ms.space_generator.ScheduleFn(
        knobbed.space(func, gemm_kernels_for(target), cores > 1),
        sch_rules=[],
        postprocs=[],
        mutator_probs={ms.mutator.MutateTileSize(): 1.0},
    )
    strategy = ms.search_strategy.EvolutionarySearch(
        population_size=GEMM_POPULATION, init_min_unmeasured=GEMM_POPULATION // 4
    )
    return TaskSpace(space, strategy)


def hand_schedule(func: tvm.tirx.PrimFunc, target: dict, cores: int, rows: bool):
    """intvit's own schedule of ``func`` with its trace (what a tuning job measures first):
    the default knobs of a packed GEMM or a fused low-rank linear, and with ``rows`` the row
    schedule of a row kernel; None for any other kernel."""
    kind = kernel_kind(func)
    if kind in KNOBBED:
        return KNOBBED[kind].default(func, gemm_kernels_for(target), cores > 1)
    if rows and kind in ROW_KINDS:
        return rowwise_schedule(func)
    return None


def tune_contexts(tasks, target: dict, db: str, seed: int, cores: int):
    """MetaSchedule's tune contexts and weights for the extracted ``tasks``, each with its
    :func:`task_space` (what ``tune_relax`` builds, with one space for all)."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.logging import get_loggers_from_work_dir
    from tvm.s_tir.meta_schedule.utils import fork_seed

    contexts, weights = [], []
    loggers = get_loggers_from_work_dir(db, [t.task_name for t in tasks])
    for task, logger, rand_state in zip(tasks, loggers, fork_seed(seed, n=len(tasks)), strict=True):
        chosen = task_space(task.dispatched[0]["main"], target, cores)
        context = ms.TuneContext(
            mod=task.dispatched[0],
            target=task.target,
            space_generator=chosen.space,
            search_strategy=chosen.strategy,
            task_name=task.task_name,
            logger=logger,
            rand_state=rand_state,
            num_threads="physical",
        )
        contexts.append(context.clone())
        weights.append(task.weight)
    return contexts, weights
