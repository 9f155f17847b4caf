"""MCUFormer's search-space evolution (seed 000, Appendix B.1, Algorithm 2): before a search,
find the region of a large space whose subnets are both accurate and within a memory budget.

A candidate **sub-space** takes a window of consecutive choices of every factor of the parent
space (:data:`FACTORS`): half of each factor's choices, and one low-rank ratio (MCUFormer's
sub-spaces each fix the rank ratio and the token size; its code trains one supernet per
``(rank ratio, patch size)`` point). Each iteration of Algorithm 2:

1. trains every candidate for ``t`` epochs (a supernet at the parent's size, each step
   sampling one subnet of the candidate; a candidate keeps its weights when it moves, so
   every candidate has had the same number of epochs when they are compared);
2. samples ``N_acc`` subnets of each for their validation top-1 with inherited weights
   (``A``, the mean), and ``N_ratio`` subnets for the fraction ``eta`` whose compiled
   integer library (planned activations + weights, :class:`intvit.nas.measure.MemoryMeter`)
   is within the budget;
3. scores each candidate (equation 2) and moves the candidates (equation 3).

The paper's equations 2 and 3 are not in the seed, and MCUFormer's public code has no single
score: it fits one plane to the error ``100 - A`` and one to ``1 - eta`` over the factor
values of the nearest candidates and moves each factor by a thresholded step of the two
planes' slopes. intvit states its own, in the same spirit:

- **Equation 2** (score): ``score = A * eta``, the expected top-1 of a subnet drawn from the
  sub-space, counted as 0 when it does not fit. A sub-space of accurate subnets that mostly
  overflow the budget scores low, as does one that fits but is inaccurate.
- **Equation 3** (evolution): a least-squares plane ``score ~ b + sum_f g_f c_f`` over the
  candidates' window centres ``c_f`` (in choice steps); the best candidate stays where it is,
  every other one moves each factor's window one choice in the direction of ``g_f`` where the
  plane's gain for one step, ``|g_f|``, is at least ``min_gain`` (clipped to the range; a move
  onto another candidate's window is not made).

"The optimal search space is selected more times": the sub-space that was the best candidate
in most iterations (ties: the higher score) is the result, written as a space file that
``intvit nas train-supernet --space`` takes. The state (candidates, results, each candidate's
supernet) is saved after every candidate's training and evaluation; a rerun resumes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from intvit.models.augment import check_shift
from intvit.models.recipe import check_training_fields
from intvit.nas.optim import LazyAdamW
from intvit.nas.space import SearchSpace, SubnetChoice, space_from_dict
from intvit.nas.supernet import Supernet
from intvit.nas.train import SupernetConfig, train_epoch
from intvit.paths import torch_save_atomic, write_text_atomic

FORMAT = "intvit-space-evolution"
#: The factors a sub-space takes a window of (``rank_ratio`` only in spaces that have it).
FACTORS = ("embed_dim", "depth", "heads", "mlp_ratio", "rank_ratio")


def factors_of(space: SearchSpace) -> tuple[str, ...]:
    return tuple(f for f in FACTORS if getattr(space, f))


def window_width(space: SearchSpace, factor: str) -> int:
    """How many consecutive choices of ``factor`` a sub-space holds: one rank ratio, half of
    every other factor's choices (rounded up)."""
    choices = len(getattr(space, factor))
    return 1 if factor == "rank_ratio" else max(1, math.ceil(choices / 2))


@dataclass(frozen=True)
class SubSpace:
    """A window ``[start, start + width)`` of every factor's sorted choices of a parent."""

    starts: tuple[tuple[str, int], ...]

    def start(self, factor: str) -> int:
        return dict(self.starts)[factor]

    def space(self, parent: SearchSpace) -> SearchSpace:
        """The sub-space as a :class:`SearchSpace` (the parent's sizes otherwise)."""
        picked = {}
        for factor, start in self.starts:
            width = window_width(parent, factor)
            picked[factor] = getattr(parent, factor)[start : start + width]
        return replace(parent, name=f"{parent.name}:{self.label(parent)}", **picked)

    def label(self, parent: SearchSpace) -> str:
        parts = []
        for factor, start in self.starts:
            choices = getattr(parent, factor)[start : start + window_width(parent, factor)]
            lo, hi = choices[0], choices[-1]
            parts.append(f"{factor}={lo}" if lo == hi else f"{factor}={lo}..{hi}")
        return ",".join(parts)

    def centres(self, parent: SearchSpace) -> np.ndarray:
        """Each window's centre in choice steps (the plane's coordinates)."""
        return np.array(
            [s + (window_width(parent, f) - 1) / 2 for f, s in self.starts], dtype=np.float64
        )

    def moved(self, factor: str, step: int, parent: SearchSpace) -> SubSpace:
        """The window of ``factor`` moved by ``step`` choices, clipped to the parent's."""
        last = len(getattr(parent, factor)) - window_width(parent, factor)
        return SubSpace(
            tuple((f, min(max(s + step, 0), last) if f == factor else s) for f, s in self.starts)
        )

    def key(self) -> str:
        return json.dumps(dict(self.starts), sort_keys=True)

    @classmethod
    def from_key(cls, key: str, parent: SearchSpace) -> SubSpace:
        starts = json.loads(key)
        return cls(tuple((f, int(starts[f])) for f in factors_of(parent)))


def all_subspaces(parent: SearchSpace) -> list[SubSpace]:
    """Every sub-space of ``parent`` (each factor's window at every start)."""
    import itertools

    ranges = [
        range(len(getattr(parent, f)) - window_width(parent, f) + 1) for f in factors_of(parent)
    ]
    return [
        SubSpace(tuple(zip(factors_of(parent), starts, strict=True)))
        for starts in itertools.product(*ranges)
    ]


@dataclass(frozen=True)
class EvolutionConfig:
    """Algorithm 2's settings: ``candidates`` sub-spaces (n), ``iterations`` (tau),
    ``epochs_per_iteration`` (t), ``n_acc`` and ``n_ratio`` subnets sampled per candidate, the
    memory budget (planned activations + weights of the compiled integer library, bytes),
    and the candidates' training settings (``shift``: the supernet's augmentation)."""

    max_memory_bytes: int
    candidates: int = 4
    iterations: int = 3
    epochs_per_iteration: int = 2
    n_acc: int = 8
    n_ratio: int = 20
    min_gain: float = 0.005
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    shift: int = 2

    def __post_init__(self) -> None:
        check_shift(self.shift)
        counts = ("max_memory_bytes", "candidates", "iterations", "epochs_per_iteration")
        check_training_fields(self, (*counts, "n_acc", "n_ratio", "batch_size"))
        if not self.min_gain >= 0:
            raise ValueError(f"min_gain={self.min_gain} must be >= 0")

    def supernet_config(self, slot: int) -> SupernetConfig:
        """Each candidate's training settings (the cosine runs over all iterations)."""
        return SupernetConfig(
            self.iterations * self.epochs_per_iteration,
            self.batch_size,
            self.lr,
            self.weight_decay,
            self.seed * 1000 + slot,
            self.shift,
        )


@dataclass
class CandidateResult:
    """One candidate of one iteration: ``accuracy`` (A), ``ratio`` (eta), ``score``."""

    iteration: int
    slot: int
    subspace: str  # SubSpace.key()
    label: str
    accuracy: float
    ratio: float
    score: float
    epochs: int
    top1s: list[float] = field(default_factory=list)
    memory_bytes: list[int] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class EvolutionSummary:
    """A finished evolution: the parent space's name, the optimal sub-space (its label, the
    file it was written to, in how many of ``iterations`` it was the best candidate, its last
    accuracy, ratio and score), the memory budget, and every candidate's result. The command
    adds its wall time, its plot and, when asked for, the optimal space's supernet."""

    parent: str
    optimal_space: str
    optimal: str
    selected: int
    iterations: int
    accuracy: float
    ratio: float
    score: float
    max_memory_bytes: int
    results: tuple[CandidateResult, ...]
    seconds: float | None = None
    plot: str | None = None
    optimal_supernet: str | None = None

    def as_dict(self) -> dict:
        """``summary.json``: every field, those not set left out."""
        body = asdict(self)
        return {k: v for k, v in body.items() if v is not None}


def score(accuracy: float, ratio: float) -> float:
    """Equation 2 (intvit's): expected top-1 of a drawn subnet, 0 where it does not fit."""
    return accuracy * ratio


def evolve(results: list[CandidateResult], parent: SearchSpace, min_gain: float) -> list[SubSpace]:
    """Equation 3 (intvit's): the candidates of the next iteration, in slot order."""
    subs = [SubSpace.from_key(r.subspace, parent) for r in results]
    x = np.array([s.centres(parent) for s in subs])
    y = np.array([r.score for r in results])
    design = np.hstack([np.ones((len(subs), 1)), x])
    slopes = np.linalg.lstsq(design, y, rcond=None)[0][1:]
    best = int(np.argmax(y))
    nxt = list(subs)
    for i in range(len(subs)):
        if i == best:
            continue
        for factor, g in zip(factors_of(parent), slopes, strict=True):
            if abs(g) < max(min_gain, 1e-12):
                continue
            moved = nxt[i].moved(factor, int(np.sign(g)), parent)
            # a factor's move onto another candidate's sub-space is not made
            if moved.key() not in {s.key() for j, s in enumerate(nxt) if j != i}:
                nxt[i] = moved
    return nxt


def initial_candidates(parent: SearchSpace, n: int, seed: int) -> list[SubSpace]:
    """``n`` distinct sub-spaces drawn at random (fewer if the space has fewer)."""
    every = all_subspaces(parent)
    rng = np.random.default_rng([seed, 7])
    picked = rng.choice(len(every), size=min(n, len(every)), replace=False)
    return [every[int(i)] for i in sorted(picked)]


def _save_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=1))


def _save_torch(path: Path, body: dict) -> None:
    torch_save_atomic(body, path)


@dataclass
class EvolutionState:
    """What a rerun resumes from (``state.json`` and ``slots/slot<j>.pt``)."""

    parent: dict
    config: dict
    data: str
    iteration: int
    candidates: list[str]  # SubSpace keys by slot
    results: list[dict] = field(default_factory=list)  # every CandidateResult so far

    def save(self, out: Path) -> None:
        _save_json(out / "state.json", {"format": FORMAT, **asdict(self)})

    @classmethod
    def load(cls, out: Path) -> EvolutionState | None:
        path = out / "state.json"
        if not path.is_file():
            return None
        try:
            body = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is corrupt ({err}); remove it to start afresh") from None
        if not isinstance(body, dict) or body.pop("format", None) != FORMAT:
            raise ValueError(f"{path} is not an intvit space-evolution state")
        return cls(**body)


def run_evolution(
    parent: SearchSpace,
    splits,
    out: str | Path,
    cfg: EvolutionConfig,
    memory_of: Callable[[SubnetChoice, Supernet], int],
    progress: bool = True,
    log: Callable[[str], None] = print,
    after_candidate: Callable[[CandidateResult], None] | None = None,
) -> EvolutionSummary:
    """Algorithm 2 on ``splits`` (``train``/``val`` ``ArraySplit``\\ s), the state in ``out``;
    ``memory_of(choice, supernet)`` is the compiled library's planned bytes of a subnet.
    Returns the summary (also ``out/summary.json``); the optimal space is written to
    ``out/optimal_space.json``."""
    out = Path(out)
    (out / "slots").mkdir(parents=True, exist_ok=True)
    state = EvolutionState.load(out)
    data_name = getattr(splits, "name", "data")
    if state is None:
        subs = initial_candidates(parent, cfg.candidates, cfg.seed)
        state = EvolutionState(parent.to_dict(), asdict(cfg), data_name, 0, [s.key() for s in subs])
        state.save(out)
    elif state.parent != json.loads(json.dumps(parent.to_dict())):
        raise ValueError(f"{out} holds the evolution of another space; choose another --out")
    elif state.config != asdict(cfg):
        raise ValueError(
            f"{out} was run with {state.config}; resume with the same settings "
            f"(asked: {asdict(cfg)}) or choose another --out"
        )
    slots = len(state.candidates)
    bar = None
    if progress:
        from tqdm import tqdm

        done = len(state.results)
        bar = tqdm(total=cfg.iterations * slots, initial=done, desc="evolve space", unit="cand")
    try:
        while state.iteration < cfg.iterations:
            it = state.iteration
            done_slots = {r["slot"] for r in state.results if r["iteration"] == it}
            for slot, key in enumerate(state.candidates):
                if slot in done_slots:
                    continue
                sub = SubSpace.from_key(key, parent)
                result = _train_and_score(parent, sub, slot, it, splits, out, cfg, memory_of)
                state.results.append(asdict(result))
                state.save(out)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(best=f"{max(r['score'] for r in state.results):.3f}")
                if after_candidate is not None:
                    after_candidate(result)
            current = [CandidateResult(**r) for r in state.results if r["iteration"] == it]
            current.sort(key=lambda r: r.slot)
            best = max(current, key=lambda r: r.score)
            log(
                f"iteration {it + 1}/{cfg.iterations}: best {best.label} "
                f"(top-1 {100 * best.accuracy:.1f}%, {100 * best.ratio:.0f}% within budget)"
            )
            state.candidates = [s.key() for s in evolve(current, parent, cfg.min_gain)]
            state.iteration += 1
            state.save(out)
    finally:
        if bar is not None:
            bar.close()
    return _summarize(parent, state, out, cfg)


def _train_and_score(parent, sub: SubSpace, slot, it, splits, out, cfg, memory_of):
    """Train candidate ``slot`` (now ``sub``) up to this iteration's epochs, then score it."""
    path = out / "slots" / f"slot{slot}.pt"
    scfg = cfg.supernet_config(slot)
    torch.manual_seed(scfg.seed)
    net = Supernet(parent)
    opt = LazyAdamW(net.parameters(), lr=scfg.lr, weight_decay=scfg.weight_decay)
    epochs = 0
    if path.is_file():
        body = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(body["supernet"])
        opt.load_state_dict(body["optimizer"])
        epochs = int(body["epochs"])
    space = sub.space(parent)
    target = (it + 1) * cfg.epochs_per_iteration
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as supernet training: deterministic, and the models are tiny
    try:
        while epochs < target:
            train_epoch(net, opt, space, splits.train, scfg, epochs)
            epochs += 1
            _save_torch(
                path,
                {"supernet": net.state_dict(), "optimizer": opt.state_dict(), "epochs": epochs},
            )
    finally:
        torch.set_num_threads(threads)
    net.eval()
    rng = np.random.default_rng([cfg.seed, it, slot])
    x = torch.from_numpy(splits.val.images)
    top1s = []
    with torch.no_grad():
        for _ in range(cfg.n_acc):
            pred = net(x, space.sample(rng)).argmax(-1).numpy()
            top1s.append(float((pred == splits.val.labels).mean()))
    memory = [memory_of(space.sample(rng), net) for _ in range(cfg.n_ratio)]
    accuracy = float(np.mean(top1s))
    ratio = float(np.mean([m <= cfg.max_memory_bytes for m in memory]))
    return CandidateResult(
        it,
        slot,
        sub.key(),
        sub.label(parent),
        accuracy,
        ratio,
        score(accuracy, ratio),
        epochs,
        top1s,
        [int(m) for m in memory],
    )


def optimal_subspace(results: list[CandidateResult]) -> tuple[str, int]:
    """The sub-space that was the best candidate in most iterations (ties: the higher best
    score) and how many times it was."""
    wins: dict[str, int] = {}
    best_score: dict[str, float] = {}
    for it in sorted({r.iteration for r in results}):
        best = max((r for r in results if r.iteration == it), key=lambda r: r.score)
        wins[best.subspace] = wins.get(best.subspace, 0) + 1
        best_score[best.subspace] = max(best_score.get(best.subspace, 0.0), best.score)
    key = max(wins, key=lambda k: (wins[k], best_score[k]))
    return key, wins[key]


def _summarize(
    parent: SearchSpace, state: EvolutionState, out: Path, cfg: EvolutionConfig
) -> EvolutionSummary:
    results = [CandidateResult(**r) for r in state.results]
    key, wins = optimal_subspace(results)
    sub = SubSpace.from_key(key, parent)
    optimal = sub.space(parent)
    optimal = replace(optimal, name=f"{parent.name}-evolved")
    space_path = out / "optimal_space.json"
    _save_json(space_path, optimal.to_dict())
    last = [r for r in results if r.subspace == key]
    summary = EvolutionSummary(
        parent=parent.name,
        optimal_space=str(space_path),
        optimal=sub.label(parent),
        selected=wins,
        iterations=cfg.iterations,
        accuracy=last[-1].accuracy,
        ratio=last[-1].ratio,
        score=last[-1].score,
        max_memory_bytes=cfg.max_memory_bytes,
        results=tuple(results),
    )
    _save_json(out / "summary.json", summary.as_dict())
    return summary


def load_optimal_space(out: str | Path) -> SearchSpace:
    path = Path(out) / "optimal_space.json"
    return space_from_dict(json.loads(path.read_text()), str(path))
