"""``intvit nas``: train a supernet, extract a subnet, and search under the compiled
integer-only library's measured latency and planned memory (see :mod:`intvit.nas`)."""

from __future__ import annotations

import json
import time
from dataclasses import KW_ONLY, asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from intvit.deploy.memory import MemoryReport
from intvit.nas.finetune import FinetuneConfig
from intvit.nas.search import Constraints, EvolutionConfig
from intvit.nas.space import SearchSpace, SubnetChoice, hidden_width
from intvit.nas.space_evolution import EvolutionConfig as SpaceEvolutionConfig
from intvit.nas.space_evolution import EvolutionSummary
from intvit.nas.train import SupernetConfig
from intvit.paths import write_text_atomic
from intvit.quant.arch import VitArch


def choice_of_arch(space: SearchSpace, arch: VitArch) -> SubnetChoice:
    """The subnet of ``space`` whose arch is ``arch``; ValueError naming what is not in it."""
    ratios = []
    for i, blk in enumerate(arch.blocks):
        if blk.attn_dim != blk.heads * space.head_dim:
            raise ValueError(
                f"blocks[{i}].attn_dim={blk.attn_dim} is not heads * head_dim "
                f"({blk.heads} * {space.head_dim}) of space {space.name!r}"
            )
        match = [r for r in space.mlp_ratio if hidden_width(arch.dim, r) == blk.mlp_hidden]
        if not match:
            raise ValueError(
                f"blocks[{i}].mlp_hidden={blk.mlp_hidden} is no MLP ratio of space "
                f"{space.name!r} ({space.mlp_ratio}) at dim {arch.dim}"
            )
        ratios.append(match[0])
    heads = tuple(b.heads for b in arch.blocks)
    for rank in space.rank_ratio or (None,):
        choice = SubnetChoice(arch.dim, heads, tuple(ratios), rank)
        if space.contains(choice) and space.arch(choice) == arch:
            return choice
    raise ValueError(f"the arch is not a subnet of search space {space.name!r}")


def read_choice(space: SearchSpace, path: str | Path) -> SubnetChoice:
    """A subnet from a JSON file: a subnet choice (``embed_dim``, ``heads``, ``mlp_ratio``,
    ``rank_ratio``: what ``intvit nas search`` writes) or a ViT arch of the space."""
    from intvit.quant.arch import read_arch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"arch file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"arch file {str(path)!r} is not JSON: {err}") from None
    if isinstance(data, dict) and "embed_dim" in data:
        try:
            choice = SubnetChoice.from_dict(data)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"arch file {str(path)!r} is not a subnet choice: {err!r}") from None
        space.check(choice)
        return choice
    arch = read_arch(path)
    if not isinstance(arch, VitArch):
        raise ValueError(f"arch file {str(path)!r} holds a {arch.family} arch")
    return choice_of_arch(space, arch)


@dataclass(frozen=True)
class SupernetResult:
    """A trained supernet: where it is, how long it took, and the validation top-1 of its
    largest and smallest subnets with inherited weights (fractions)."""

    checkpoint: Path
    seconds: float
    largest_val_top1: float
    smallest_val_top1: float


def run_train_supernet(
    space, data: str, out: Path, cfg: SupernetConfig, progress: bool = True
) -> SupernetResult:
    """Train (or resume) the supernet of ``space`` on ``data``'s train split into ``out``."""
    from intvit.nas.data import search_data
    from intvit.nas.train import load_supernet, train_supernet

    splits = search_data(data, space)
    t0 = time.time()
    path = train_supernet(space, splits.train, out, cfg, progress, data_name=splits.name)
    net, _ = load_supernet(path)
    import torch

    def top1(choice):
        with torch.no_grad():
            pred = net(torch.from_numpy(splits.val.images), choice).argmax(-1).numpy()
        return float((pred == splits.val.labels).mean())

    return SupernetResult(
        Path(path), time.time() - t0, top1(space.largest()), top1(space.smallest())
    )


def run_extract(
    supernet: Path,
    arch_file: Path,
    out: Path,
    finetune=None,
    data: str | None = None,
    progress: bool = True,
) -> Path:
    """The subnet of ``arch_file`` with its inherited weights written to ``out``; with a
    ``finetune`` config (:class:`~intvit.nas.finetune.FinetuneConfig`), first fine-tuned on
    ``data`` (default: the supernet's)."""
    from intvit.nas.train import load_supernet

    net, body = load_supernet(supernet)
    choice = read_choice(net.space, arch_file)
    data = data or body.get("data") or "digits"
    return _save_best(net, choice, out, data, finetune, progress, from_supernet=str(supernet))


def _save_best(
    net, choice, out: Path, data: str, finetune, progress: bool, splits=None, **meta
) -> Path:
    """Extract ``choice``, fine-tune it when ``finetune`` is a config (on ``splits``, the
    caller's loaded ``data``, or ``data`` loaded here), and save it."""
    from intvit.models.hetero_vit import save_hetero_checkpoint
    from intvit.nas.extract import extract_subnet

    model = extract_subnet(net, choice)
    if finetune is not None:
        from intvit.nas.data import search_data
        from intvit.nas.finetune import finetune as run_finetune

        if splits is None:
            splits = search_data(data, net.space)
        run_finetune(model, splits, finetune, progress)
        meta["finetune"] = asdict(finetune)
    return save_hetero_checkpoint(model, out, subnet=choice.key(), data=data, **meta)


@dataclass(frozen=True)
class SearchRequest:
    """A search: the supernet, the output folder, the data, the constraints and the
    evolution's settings, and where latency is measured (a tracker and key; None: no device,
    so no latency constraint)."""

    supernet: Path
    out: Path
    _: KW_ONLY
    data: str = "digits"
    constraints: Constraints = field(default_factory=Constraints)
    config: EvolutionConfig = field(default_factory=EvolutionConfig)
    tracker: str | None = None
    key: str | None = None
    target: str = "host"
    progress: bool = True
    #: where measurements are cached (default ``~/.cache/intvit/nas``)
    cache_dir: Path | None = None
    #: fine-tune the best subnet before it is quantized and exported; None deploys the
    #: inherited weights
    finetune: FinetuneConfig | None = None


@dataclass
class SearchSummary:
    """What a search found: the best subnet (its choice as ``SubnetChoice.to_dict``), its
    validation top-1 and loss, measured and predicted latency (ms; None without a device),
    parameters, MACs and activation memory (bytes), the exported library and its memory
    plan, whether the library matched the reference forward on the host, the fine-tuning
    it got (None: inherited weights), the latency predictor's error on the re-measured
    candidates (MAPE, a fraction), how many subnets were evaluated over how many
    generations, and the search's wall time (s). ``summary.json`` holds :meth:`as_dict`."""

    best_arch: dict
    best_val_top1: float
    best_val_loss: float
    best_latency_ms: float | None
    best_latency_pred_ms: float | None
    best_params: int
    best_macs: int
    best_memory_bytes: int
    library: str
    library_memory: MemoryReport
    bit_exact: bool
    finetune: FinetuneConfig | None
    predictor_mape: float | None
    evaluated: int
    generations: int
    search_s: float = 0.0

    def as_dict(self) -> dict:
        data = asdict(self)
        data["library_memory"] = self.library_memory.as_dict()
        return data


def run_search(req: SearchRequest) -> SearchSummary:
    """The whole search: seed measurements and the predictor (with a device), the
    generations, the final measurements, the outputs in ``req.out``, and the best subnet
    extracted, quantized, compiled and exported there."""
    from intvit.nas.data import search_data
    from intvit.nas.measure import LatencyMeter, MemoryMeter
    from intvit.nas.predictor import LatencyPredictor, mape
    from intvit.nas.search import (
        Evaluator,
        SearchState,
        evolve,
        pareto_front,
    )
    from intvit.nas.train import load_supernet

    t0 = time.time()
    limits, cfg = req.constraints, req.config
    if limits.max_latency_ms is not None and req.tracker is None:
        raise ValueError("a latency constraint needs a device: give --tracker and --key")
    if (req.tracker is None) != (req.key is None):
        raise ValueError("--tracker and --key go together")
    net, _ = load_supernet(req.supernet)
    space = net.space
    splits = search_data(req.data, space)
    calib = splits.val.images[:32]
    out = Path(req.out)
    out.mkdir(parents=True, exist_ok=True)
    memory = None
    evaluator = Evaluator(net, splits.val, calib, cfg.int_fitness, memory)
    if limits.max_memory_bytes is not None:
        memory = evaluator.memory = MemoryMeter(req.target, calib, req.cache_dir)
        # the smallest subnet (every dimension at its least) needs the least memory: if it
        # does not fit, nothing does, and that is said now rather than after the search
        smallest = space.smallest()
        least = memory.bytes(space.arch(smallest), evaluator.make(smallest))
        if least > limits.max_memory_bytes:
            raise ValueError(
                f"no subnet fits {limits.max_memory_bytes / 1024:.1f} KiB: the smallest in the "
                f"space needs {least / 1024:.1f} KiB (activations + weights on "
                f"{req.target}); raise --max-memory-kib to at least {least / 1024:.0f}"
            )
    meter = None
    if req.tracker is not None:
        meter = LatencyMeter(req.tracker, req.key, req.target, calib, req.cache_dir)
    state_path = out / "state.json"
    key_cfg = {**asdict(cfg), "supernet": str(Path(req.supernet).resolve()), "target": req.target}
    state = (
        SearchState.load(state_path, space, key_cfg, asdict(limits))
        if state_path.is_file()
        else SearchState(key_cfg, asdict(limits))
    )

    def save(s: SearchState) -> None:
        write_text_atomic(state_path, s.to_json(space))

    def measure(choices: list[SubnetChoice], what: str) -> None:
        todo = [c for c in choices if c.key() not in state.measured]
        if not todo:
            return
        bar = None
        if req.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=what, unit="subnet")
        by_arch: dict[str, list[SubnetChoice]] = {}
        for c in todo:  # two choices may make one arch (rank ratios rounding alike)
            by_arch.setdefault(json.dumps(space.arch(c).to_dict(), sort_keys=True), []).append(c)

        def done(m):
            for c in by_arch[json.dumps(m.arch.to_dict(), sort_keys=True)]:
                state.measured[c.key()] = m.ms
            save(state)  # every measurement kept as it comes
            if bar is not None:
                bar.update(1)

        firsts = [cs[0] for cs in by_arch.values()]
        meter.measure_all([(space.arch(c), evaluator.make(c)) for c in firsts], on_done=done)
        if bar is not None:
            bar.close()

    predictor_mape = None
    if meter is not None:
        rng = np.random.default_rng([cfg.seed, 7])
        seeds = [space.largest(), space.smallest()]
        seeds += [space.sample(rng) for _ in range(max(0, cfg.seed_measurements - 2))]
        measure(list({c.key(): c for c in seeds}.values()), "measure seed subnets")
        keys = list(state.measured)
        choices = [SubnetChoice.from_dict(json.loads(k)) for k in keys]
        evaluator.predictor = LatencyPredictor(cfg.seed).fit(
            [space.arch(c) for c in choices], [state.measured[k] for k in keys]
        )
    state = evolve(space, evaluator, limits, cfg, state, save, req.progress)

    cands = list(state.history.values())
    final = []
    if meter is not None:
        front = pareto_front(cands, "latency_pred_ms")
        front = sorted(front, key=lambda c: c.fitness, reverse=True)[: cfg.final_measurements]
        measure([c.choice for c in front], "measure Pareto subnets")
        for c in front:
            c.latency_ms = state.measured[c.choice.key()]
        save(state)
        final = front
        predictor_mape = mape([c.latency_pred_ms for c in front], [c.latency_ms for c in front])
    under = [c for c in (final or cands) if _meets_measured(c, limits)]
    if not under:
        raise ValueError("no candidate meets the constraints on the device; relax them")
    best = max(under, key=lambda c: (c.fitness, -(c.latency_ms or c.macs)))
    summary = _write_outputs(out, space, net, state, best, splits, req, predictor_mape)
    summary.search_s = time.time() - t0
    write_text_atomic(out / "summary.json", json.dumps(summary.as_dict(), indent=1) + "\n")
    return summary


def _meets_measured(c, limits) -> bool:
    if limits.max_latency_ms is not None:
        return c.latency_ms is not None and c.latency_ms <= limits.max_latency_ms
    return True


def _write_outputs(out, space, net, state, best, splits, req, predictor_mape) -> SearchSummary:
    from intvit.deploy.compile import compile_int_model, export
    from intvit.nas.search import pareto_front
    from intvit.quant.artifact import save_int_model
    from intvit.quant.calibrate import calibrate
    from intvit.quant.reference import quantize_input, reference_forward

    cands = list(state.history.values())
    (out / "evaluated.json").write_text(
        json.dumps([c.as_dict(space) for c in cands], indent=1) + "\n"
    )
    fronts = {
        cost: [c.as_dict(space) for c in pareto_front(cands, cost)]
        for cost in ("latency_ms", "latency_pred_ms", "memory_bytes", "macs", "params")
    }
    (out / "pareto.json").write_text(json.dumps(fronts, indent=1) + "\n")
    _plot(out / "pareto.png", cands, best)
    (out / "best_arch.json").write_text(json.dumps(asdict(best.choice), indent=1) + "\n")
    ckpt = _save_best(
        net, best.choice, out / "best.pt", req.data, req.finetune, req.progress, splits
    )
    from intvit.models.hetero_vit import load_hetero_checkpoint

    model = load_hetero_checkpoint(ckpt)
    int_model = calibrate(model, splits.val.images[:97], source=str(ckpt))
    save_int_model(int_model, out / "best.safetensors")
    compiled = compile_int_model(int_model, req.target)
    lib = export(compiled, req.target, out / "best.so")
    exact = True
    if req.target == "host":
        import tvm
        from tvm import relax

        vm = relax.VirtualMachine(tvm.runtime.load_module(str(lib)), tvm.cpu())
        for image in splits.test.images[:4]:  # the library takes batch 1
            q = quantize_input(int_model, image[None])
            got = vm["main"](tvm.runtime.tensor(q)).numpy()
            exact = exact and bool(np.array_equal(got, reference_forward(int_model, q)))
    return SearchSummary(
        best_arch=asdict(best.choice),
        best_val_top1=best.val_top1,
        best_val_loss=best.val_loss,
        best_latency_ms=best.latency_ms,
        best_latency_pred_ms=best.latency_pred_ms,
        best_params=best.params,
        best_macs=best.macs,
        best_memory_bytes=best.memory_bytes,
        library=str(lib),
        library_memory=compiled.manifest.memory,
        bit_exact=exact,
        finetune=req.finetune,
        predictor_mape=predictor_mape,
        evaluated=len(cands),
        generations=state.generation,
    )


def _plot(path: Path, cands, best) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from intvit.nas.search import pareto_front

    panels = [
        ("latency_pred_ms", "integer-only latency (ms, predicted; o = measured)"),
        ("memory_bytes", "compiled memory: activations + weights (KiB)"),
        ("macs", "MACs per image (M)"),
    ]
    panels = [(k, t) for k, t in panels if any(getattr(c, k) is not None for c in cands)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    scale = {"latency_pred_ms": 1.0, "memory_bytes": 1 / 1024, "macs": 1e-6}
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        pts = [c for c in cands if getattr(c, key) is not None]
        xs = [getattr(c, key) * scale[key] for c in pts]
        ax.scatter(xs, [100 * c.val_top1 for c in pts], s=10, alpha=0.35, label="evaluated")
        front = pareto_front(pts, key)
        ax.plot(
            [getattr(c, key) * scale[key] for c in front],
            [100 * c.val_top1 for c in front],
            "r.-",
            label="Pareto front",
        )
        if key == "latency_pred_ms":
            meas = [c for c in pts if c.latency_ms is not None]
            ax.scatter(
                [c.latency_ms for c in meas],
                [100 * c.val_top1 for c in meas],
                marker="o",
                facecolors="none",
                edgecolors="k",
                label="measured",
            )
        best_x = best.latency_ms if key == "latency_pred_ms" else getattr(best, key)
        if best_x is not None:
            ax.scatter(
                [best_x * scale[key]],
                [100 * best.val_top1],
                marker="*",
                s=160,
                c="gold",
                edgecolors="k",
                label="best under the constraint",
            )
        ax.set_xlabel(title)
        ax.set_ylabel("validation top-1 (%), inherited weights")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("intvit nas search")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass
class EvolveSpaceRequest:
    """``intvit nas evolve-space``: MCUFormer's search-space evolution of ``space``."""

    space: SearchSpace
    out: Path
    config: SpaceEvolutionConfig
    data: str = "digits"
    target: str = "host"  # the preset whose compiled memory plan is the budget's measure
    final_epochs: int = 0  # then train the optimal space's supernet this long
    progress: bool = True
    cache_dir: Path | None = None


def run_evolve_space(req: EvolveSpaceRequest) -> EvolutionSummary:
    """Algorithm 2 (:mod:`intvit.nas.space_evolution`), its plot, and with ``final_epochs``
    the optimal space's supernet (``out/optimal_supernet.pt``)."""
    from intvit.nas.data import search_data
    from intvit.nas.extract import extract_subnet
    from intvit.nas.measure import MemoryMeter
    from intvit.nas.space_evolution import run_evolution

    splits = search_data(req.data, req.space)
    meter = MemoryMeter(req.target, splits.train.images[:8], req.cache_dir)
    space = req.space

    def memory_of(choice, net) -> int:
        return meter.bytes(space.arch(choice), lambda: extract_subnet(net, choice))

    t0 = time.time()
    summary = run_evolution(space, splits, req.out, req.config, memory_of, progress=req.progress)
    plot = Path(req.out) / "space_evolution.png"
    _plot_evolution(plot, summary)
    summary = replace(summary, seconds=time.time() - t0, plot=str(plot))
    if req.final_epochs:
        from intvit.nas.space_evolution import load_optimal_space
        from intvit.nas.train import train_supernet

        cfg = SupernetConfig(
            req.final_epochs,
            req.config.batch_size,
            req.config.lr,
            req.config.weight_decay,
            shift=req.config.shift,
        )
        path = Path(req.out) / "optimal_supernet.pt"
        optimal = load_optimal_space(req.out)
        train_supernet(optimal, splits.train, path, cfg, req.progress, data_name=splits.name)
        summary = replace(summary, optimal_supernet=str(path))
    write_text_atomic(Path(req.out) / "summary.json", json.dumps(summary.as_dict(), indent=1))
    return summary


def _plot_evolution(path: Path, summary: EvolutionSummary) -> None:
    """Each candidate of each iteration: mean inherited top-1 against the fraction of its
    subnets within the budget, the optimal sub-space marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = summary.results
    iterations = sorted({r.iteration for r in results})
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    cmap = plt.get_cmap("viridis", max(len(iterations), 2))
    for it in iterations:
        rs = [r for r in results if r.iteration == it]
        ax.scatter(
            [100 * r.ratio for r in rs],
            [100 * r.accuracy for r in rs],
            color=cmap(it),
            label=f"iteration {it + 1}",
            s=30,
        )
    opt = [r for r in results if r.label == summary.optimal]
    ax.scatter(
        [100 * r.ratio for r in opt],
        [100 * r.accuracy for r in opt],
        marker="*",
        s=180,
        facecolors="none",
        edgecolors="r",
        label=f"optimal: {summary.optimal}",
    )
    ax.set_xlabel(f"subnets within {summary.max_memory_bytes / 1024:.0f} KiB compiled (%)")
    ax.set_ylabel("mean validation top-1 (%), inherited weights")
    ax.set_title("intvit nas evolve-space (MCUFormer Alg. 2)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
