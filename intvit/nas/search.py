"""Evolutionary search over a trained supernet (AutoFormer's Algorithm 2, seed 004), scored by
inherited-weight validation top-1 and constrained by any of: parameters, MACs, the compiled
integer library's planned memory (activations + weights), and its integer-only latency on an
RPC device.

Fitness is top-1 first, then the validation cross-entropy (lower is fitter) among subnets of
equal top-1 (:attr:`Candidate.fitness`). On a small validation split top-1 saturates: in the
digits benchmark 485 of 901 subnets under the latency budget scored the same 97.5% of 200
images, so top-1 alone ranked half the space equal, the Pareto front stopped at the cheapest
of them, and the "best" was merely the cheapest. The cross-entropy is a proper scoring rule on
the same images and orders them; AutoFormer's 50,000 ImageNet validation images need no such
tie-break, but it does not change any ranking top-1 decides.

Latency inside the loop comes from an XGBoost predictor fitted on a seed set of subnets that
were compiled, checked bit-exact and timed on the device; the final Pareto candidates are
measured on the device again and the predictor's error on them is reported. The search state
(every evaluated subnet, the population, the generator's state) is written after every
generation; a rerun with the same settings resumes after the last finished one.

Defaults are the seed's: population 50, top-10 parents, 25 children by crossover and 25 by
mutation, depth (and embedding dim) mutation probability Pd 0.2, per-block mutation
probability Pm 0.4, 20 generations.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from intvit.nas.cost import macs, params
from intvit.nas.space import SearchSpace, SubnetChoice
from intvit.nas.supernet import Supernet

STATE_VERSION = 2  # 2: candidates carry their validation loss


@dataclass(frozen=True)
class Constraints:
    """Upper bounds a subnet must meet (None: no bound)."""

    max_params: int | None = None
    max_macs: int | None = None
    max_memory_bytes: int | None = None
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is not None and not value > 0:
                raise ValueError(f"{name}={value} must be > 0")


@dataclass(frozen=True)
class EvolutionConfig:
    population: int = 50
    parents: int = 10
    crossover: int = 25
    mutation: int = 25
    p_depth: float = 0.2
    p_mutate: float = 0.4
    generations: int = 20
    seed: int = 0
    #: subnets measured on the device to fit the latency predictor
    seed_measurements: int = 24
    #: Pareto candidates measured on the device at the end
    final_measurements: int = 8
    #: fitness is integer-only top-1 (calibrated on a few images) instead of float
    int_fitness: bool = False

    def __post_init__(self) -> None:
        for name in ("population", "parents", "generations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("crossover", "mutation", "seed_measurements", "final_measurements"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        for name in ("p_depth", "p_mutate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1]")


@dataclass
class Candidate:
    """One evaluated subnet."""

    choice: SubnetChoice
    val_top1: float
    params: int
    macs: int
    memory_bytes: int | None = None
    latency_pred_ms: float | None = None
    latency_ms: float | None = None  # measured on the device
    generation: int = 0
    val_loss: float | None = None  # mean cross-entropy on the validation split

    @property
    def fitness(self) -> tuple[float, float]:
        """Sort key, larger is fitter: top-1, then the negated validation loss (a candidate
        without one, as made by hand, is the least fit of its top-1)."""
        loss = float("inf") if self.val_loss is None else self.val_loss
        return (self.val_top1, -loss)

    def as_dict(self, space: SearchSpace) -> dict:
        d = asdict(self)
        d["choice"] = asdict(self.choice)
        d["arch"] = space.arch(self.choice).to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Candidate:
        d = {k: v for k, v in d.items() if k != "arch"}
        d["choice"] = SubnetChoice.from_dict(d["choice"])
        return cls(**d)


@dataclass
class SearchState:
    config: dict
    constraints: dict
    generation: int = 0
    population: list[str] = field(default_factory=list)
    history: dict[str, Candidate] = field(default_factory=dict)
    rng: dict = field(default_factory=dict)
    measured: dict[str, float] = field(default_factory=dict)  # choice key -> device ms

    def to_json(self, space: SearchSpace) -> str:
        return json.dumps(
            {
                "version": STATE_VERSION,
                "config": self.config,
                "constraints": self.constraints,
                "space": space.to_dict(),
                "generation": self.generation,
                "population": self.population,
                "history": {k: c.as_dict(space) for k, c in self.history.items()},
                "rng": self.rng,
                "measured": self.measured,
            },
            indent=1,
        )

    @classmethod
    def load(cls, path: Path, space: SearchSpace, config: dict, constraints: dict):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"search state {str(path)!r} is corrupt: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(
                f"search state {str(path)!r} holds a JSON {type(data).__name__}, not an object"
            )
        fields = ("version", "space", "config", "constraints", "generation", "population")
        missing = [f for f in (*fields, "history", "rng", "measured") if f not in data]
        if missing:
            raise ValueError(f"search state {str(path)!r} lacks {', '.join(missing)}")
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"search state {str(path)!r} has version {data.get('version')!r}")
        for what, mine in (("space", space.to_dict()), ("config", config)):
            if data[what] != json.loads(json.dumps(mine)):
                raise ValueError(
                    f"{str(path)!r} is a search with another {what}; resume with the same "
                    "settings or choose another --out"
                )
        if data["constraints"] != json.loads(json.dumps(constraints)):
            raise ValueError(f"{str(path)!r} is a search under other constraints")
        return cls(config, constraints, *_state_fields(path, data, space))


def _state_fields(path: Path, data: dict, space: SearchSpace) -> tuple:
    """``(generation, population, history, rng, measured)`` of a state file's body, each
    checked; ValueError naming the file and the first bad field or entry."""
    where = f"search state {str(path)!r}"
    generation, population = data["generation"], data["population"]
    history, rng, measured = data["history"], data["rng"], data["measured"]
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise ValueError(f"{where}: generation {generation!r} is not an integer >= 0")
    for name, value, kind in (
        ("population", population, list),
        ("history", history, dict),
        ("rng", rng, dict),
        ("measured", measured, dict),
    ):
        if not isinstance(value, kind):
            raise ValueError(f"{where}: {name} is a {type(value).__name__}, not a {kind.__name__}")
    candidates = {}
    for key, entry in history.items():
        try:
            candidate = Candidate.from_dict(entry)
            space.check(candidate.choice)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{where}: history entry {key[:60]!r} is malformed ({err})") from None
        candidates[key] = candidate
    for key in population:
        if not isinstance(key, str) or key not in candidates:
            raise ValueError(f"{where}: population entry {str(key)[:60]!r} is not in its history")
    for key, ms in measured.items():
        if isinstance(ms, bool) or not isinstance(ms, int | float) or not ms > 0:
            raise ValueError(f"{where}: measured latency {ms!r} of {key[:60]!r} is not > 0")
    return generation, population, candidates, rng, measured


def mutate(
    space: SearchSpace, c: SubnetChoice, rng: np.random.Generator, p_depth: float, p_mut: float
) -> SubnetChoice:
    """AutoFormer's mutation: the depth (and the network-wide embedding dim and rank ratio)
    with probability ``p_depth``, then each block's heads and MLP ratio with ``p_mut``."""
    heads, ratios = list(c.heads), list(c.mlp_ratio)
    if rng.random() < p_depth:
        depth = int(rng.choice(space.depth))
        while len(heads) < depth:
            heads.append(int(rng.choice(space.heads)))
            ratios.append(float(rng.choice(space.mlp_ratio)))
        heads, ratios = heads[:depth], ratios[:depth]
    for i in range(len(heads)):
        if rng.random() < p_mut:
            heads[i] = int(rng.choice(space.heads))
        if rng.random() < p_mut:
            ratios[i] = float(rng.choice(space.mlp_ratio))
    embed, rank = c.embed_dim, c.rank_ratio
    if rng.random() < p_depth:
        embed = int(rng.choice(space.embed_dim))
    if space.rank_ratio and rng.random() < p_depth:
        rank = float(rng.choice(space.rank_ratio))
    return SubnetChoice(embed, tuple(heads), tuple(ratios), rank)


def crossover(a: SubnetChoice, b: SubnetChoice, rng: np.random.Generator) -> SubnetChoice:
    """AutoFormer's crossover: each block from either parent (the depth of one of them; blocks
    only the deeper one has come from it), the network-wide factors from either."""
    depth = a.depth if rng.random() < 0.5 else b.depth
    heads, ratios = [], []
    for i in range(depth):
        parents = [p for p in (a, b) if i < p.depth]
        p = parents[int(rng.integers(len(parents)))]
        heads.append(p.heads[i])
        ratios.append(p.mlp_ratio[i])
    return SubnetChoice(
        (a, b)[int(rng.integers(2))].embed_dim,
        tuple(heads),
        tuple(ratios),
        (a, b)[int(rng.integers(2))].rank_ratio,
    )


class Evaluator:
    """Fitness and costs of subnets: top-1 on ``val`` with the supernet's weights (float, or
    integer-only after calibrating the extracted subnet), parameters, MACs, and (when a meter
    is given) the compiled library's memory and the predicted latency."""

    def __init__(self, supernet: Supernet, val, calib, int_fitness=False, memory=None):
        self.supernet, self.val, self.calib = supernet, val, calib
        self.int_fitness, self.memory = int_fitness, memory
        self.predictor = None

    def make(self, choice: SubnetChoice):
        from intvit.nas.extract import extract_subnet

        return lambda: extract_subnet(self.supernet, choice)

    @torch.no_grad()
    def score(self, choice: SubnetChoice) -> tuple[float, float]:
        """Validation top-1 and mean cross-entropy of ``choice`` (integer-only: of the
        dequantized logits of the reference forward)."""
        if self.int_fitness:
            from intvit.nas.measure import int_model_of
            from intvit.quant.reference import predict

            model = int_model_of(self.make(choice)(), self.calib)
            logits = torch.from_numpy(np.asarray(predict(model, self.val.images), np.float32))
        else:
            logits = self.supernet(torch.from_numpy(self.val.images), choice)
        labels = torch.from_numpy(self.val.labels)
        top1 = float((logits.argmax(-1) == labels).float().mean())
        return top1, float(torch.nn.functional.cross_entropy(logits, labels))

    def costs(self, choice: SubnetChoice) -> Candidate:
        arch = self.supernet.space.arch(choice)
        cand = Candidate(choice, float("nan"), params(arch), macs(arch))
        if self.predictor is not None:
            cand.latency_pred_ms = float(self.predictor.predict([arch])[0])
        return cand

    def fits(self, cand: Candidate, limits: Constraints) -> bool:
        """Whether ``cand`` meets ``limits``; the memory plan is computed (and cached) only
        for candidates that pass the cheaper checks."""
        if limits.max_params is not None and cand.params > limits.max_params:
            return False
        if limits.max_macs is not None and cand.macs > limits.max_macs:
            return False
        if limits.max_latency_ms is not None and cand.latency_pred_ms is not None:
            if cand.latency_pred_ms > limits.max_latency_ms:
                return False
        if limits.max_memory_bytes is not None and self.memory is not None:
            arch = self.supernet.space.arch(cand.choice)
            cand.memory_bytes = self.memory.bytes(arch, self.make(cand.choice))
            if cand.memory_bytes > limits.max_memory_bytes:
                return False
        return True


def _rng_state(rng: np.random.Generator) -> dict:
    return json.loads(json.dumps(rng.bit_generator.state))


def pareto_front(cands: list[Candidate], cost: str) -> list[Candidate]:
    """The candidates no other beats on both fitness (higher: top-1, then validation loss) and
    ``cost`` (lower)."""
    pts = [c for c in cands if getattr(c, cost) is not None]
    pts.sort(key=lambda c: (getattr(c, cost), tuple(-f for f in c.fitness)))
    front: list[Candidate] = []
    for c in pts:
        if not front or c.fitness > front[-1].fitness:
            front.append(c)
    return front


def evolve(
    space: SearchSpace,
    evaluator: Evaluator,
    limits: Constraints,
    cfg: EvolutionConfig,
    state: SearchState,
    save,
    progress: bool = True,
) -> SearchState:
    """Run (or continue) the generations; ``save(state)`` after each one."""
    rng = np.random.default_rng(cfg.seed)
    if state.rng:
        rng.bit_generator.state = state.rng

    def evaluate(choice: SubnetChoice, generation: int) -> Candidate | None:
        """The candidate if it meets the limits (evaluated once, then from the history)."""
        key = choice.key()
        if key in state.history:
            return state.history[key]
        cand = evaluator.costs(choice)
        if not evaluator.fits(cand, limits):
            return None
        cand.val_top1, cand.val_loss = evaluator.score(choice)
        cand.generation = generation
        state.history[key] = cand
        return cand

    def fill(make, count: int, generation: int, taken: set) -> list[str]:
        out: list[str] = []
        for _ in range(50 * max(count, 1)):  # bounded: a tight constraint may admit few
            if len(out) >= count:
                break
            choice = make()
            key = choice.key()
            if key in taken or not space.contains(choice):
                continue
            if evaluate(choice, generation) is not None:
                out.append(key)
                taken.add(key)
        return out

    if state.generation == 0 and not state.population:
        state.population = fill(lambda: space.sample(rng), cfg.population, 0, set())
        if not state.population:
            raise ValueError("no subnet of the space meets the constraints")
        state.rng = _rng_state(rng)
        save(state)
    gens = range(state.generation, cfg.generations)
    if progress:
        from tqdm import tqdm

        gens = tqdm(
            gens, desc="search", unit="gen", initial=state.generation, total=cfg.generations
        )
    for g in gens:
        pop = [state.history[k] for k in state.population]
        parents = sorted(pop, key=lambda c: c.fitness, reverse=True)[: cfg.parents]
        taken: set = set()

        def pick(parents=parents) -> SubnetChoice:
            return parents[int(rng.integers(len(parents)))].choice

        children = fill(
            lambda: mutate(space, pick(), rng, cfg.p_depth, cfg.p_mutate),
            cfg.mutation,
            g + 1,
            taken,
        )
        children += fill(lambda: crossover(pick(), pick(), rng), cfg.crossover, g + 1, taken)
        short = cfg.population - len(children)
        if short > 0:  # keep the population's size with fresh samples
            children += fill(lambda: space.sample(rng), short, g + 1, taken)
        state.population = children or state.population
        state.generation = g + 1
        state.rng = _rng_state(rng)
        save(state)
        if progress:
            best = max(state.history.values(), key=lambda c: c.fitness)
            gens.set_postfix(best=f"{100 * best.val_top1:.1f}%", seen=len(state.history))
    return state
