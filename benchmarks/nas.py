"""Benchmark: hardware-aware architecture search on a built-in data set (digits or MNIST), with
this host as the RPC device, in one run.

    .venv/bin/python benchmarks/nas.py [--data mnist]

``<data>`` below is digits or mnist: its zoo ViT (``<data>_vit``) is the baseline and its
shipped space (``<data>``) is searched. Digits: 1000 supernet train images, 200 validation;
MNIST: 4000 and 500. Both test on 500 images the search never sees.

1. The baseline: the zoo ViT's shape, integer-only top-1 on the test split, and its
   integer-only latency measured on the device (compiled, checked bit-exact, timed). Three
   trainings of it, and the strongest is the baseline, so the search is credited with
   neither its recipe nor its supernet:
   - the zoo checkpoint (its recipe: :data:`intvit.models.zoo.DIGITS_RECIPE` /
     ``MNIST_RECIPE``);
   - the zoo recipe with the supernet's augmentation (a random shift of up to 2 pixels), from
     scratch, 3 seeds;
   - the same recipe started from the ViT's inherited supernet weights (its shape is in the
     space), 3 seeds: what the searched subnet gets, given to it.
2. A weight-entangled supernet trained on the space (the search's train split; its
   validation split ranks subnets; the test split is never seen), 200 epochs with the random
   shift.
3. An evolutionary search (the seed's defaults: population 50, 20 generations) under a latency
   budget equal to the baseline's measured latency: seed subnets measured on the device, an
   XGBoost predictor inside the loop, the final Pareto candidates measured again (the
   predictor's error on them is ``predictor_mape``).
4. The best subnet, extracted, fine-tuned from its inherited weights with the baseline's
   recipe (``intvit nas search --finetune-epochs 60``), quantized, compiled and exported: its
   measured latency, and its integer-only top-1 on the test split with inherited weights and
   fine-tuned (3 seeds; seed 0 is the exported library). ``best_top1`` and ``baseline_top1``
   are means over the 3 seeds (the zoo checkpoint is one model).
5. The ranking check: 5 subnets retrained from scratch with 5 seeds each, with the supernet's
   recipe (its epochs and its augmentation, as in AutoFormer's Table 1), Kendall's tau of their
   mean retrained top-1 against their inherited-weight top-1, both on the validation and test
   images (700; the check selects nothing, so the test images may count).
6. The same search under a memory budget (activations + weights of the compiled library)
   instead, the best subnet's compiled library checked against the budget.

Writes benchmarks/results/nas.json (records of the other data set are kept): one record per
case with ``data, case, baseline,
baseline_top1, baseline_latency_ms, best_top1, best_latency_ms, best_arch, predictor_mape,
kendall_tau, search_s`` and the details; the search outputs (every evaluated subnet, Pareto
fronts, the PNG plot, the best library) go to out/nas-bench/.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "nas.json"


def int_top1(float_model, splits) -> float:
    """Integer-only top-1 of ``float_model`` on ``splits.test``, calibrated on the data set's
    calibration split (digits: its 97 calibration images; MNIST: 97 validation images)."""
    from intvit.models.datasets import builtin_data
    from intvit.quant.calibrate import calibrate
    from intvit.quant.reference import predict

    data = builtin_data(splits.name)
    size = int(float_model.patch_embed.img_size[0])
    int_model = calibrate(float_model, data.split(data.calib, size).images[:97])
    pred = predict(int_model, splits.test.images).argmax(-1)
    return float((pred == splits.test.labels).mean())


def finetune_config(seed: int, recipe=None):
    """The fine-tuning recipe: the zoo's (``recipe``; default 60 epochs, lr 2e-3) with the
    supernet's shift."""
    from dataclasses import replace

    from intvit.nas.finetune import FinetuneConfig
    from intvit.nas.train import SupernetConfig

    base = FinetuneConfig() if recipe is None else recipe
    return replace(base, seed=seed, shift=SupernetConfig().shift)


def finetuned_top1s(net, choice: dict, splits, seeds: int, first=None, recipe=None) -> list[float]:
    """Integer top-1 of subnet ``choice`` fine-tuned from its inherited weights with
    :func:`finetune_config`, one per seed (``first``: seed 0's model, fine-tuned already)."""
    from intvit.nas.finetune import finetune

    out = []
    for seed in range(seeds):
        if seed == 0 and first is not None:
            model = first
        else:
            cfg = finetune_config(seed, recipe)
            model = finetune(_extracted(net, choice), splits, cfg, False)
        out.append(int_top1(model, splits))
    return out


def main(argv: list[str] | None = None) -> int:
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("digits", "mnist"), default="digits")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=None, help="default out/nas-bench[-mnist]")
    parser.add_argument("--epochs", type=int, default=200, help="supernet epochs")
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--population", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=3, help="trainings per top-1 (baseline, best)")
    parser.add_argument(
        "--ranking-epochs", type=int, default=None, help="retraining epochs (default: --epochs)"
    )
    parser.add_argument("--ranking-seeds", type=int, default=5, help="retrainings per subnet")
    args = parser.parse_args(argv)
    if args.ranking_epochs is None:
        args.ranking_epochs = args.epochs
    for name in ("ranking_epochs", "ranking_seeds", "seeds"):  # checked before the search
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)} must be >= 1")

    from dataclasses import replace

    from intvit.api.nas import SearchRequest, choice_of_arch, run_search
    from intvit.bench.records import machine_info
    from intvit.deploy.rpc import connect_tracker, start_host_server, start_tracker, wait_for_device
    from intvit.models.datasets import builtin_data
    from intvit.models.hetero_vit import load_hetero_checkpoint
    from intvit.models.train import ensure_trained, fit_seeded
    from intvit.models.zoo import SMALL_CONFIGS, create_float_model
    from intvit.nas.data import search_data
    from intvit.nas.measure import LatencyMeter
    from intvit.nas.ranking import ranking_check
    from intvit.nas.search import Constraints, EvolutionConfig
    from intvit.nas.space import load_space
    from intvit.nas.train import SupernetConfig, load_supernet, train_supernet
    from intvit.quant.shadow import vit_arch

    machine = machine_info()
    print(f"machine: {machine}", flush=True)
    data = args.data
    base_name = f"{data}_vit"
    recipe = SMALL_CONFIGS[base_name].recipe
    work = args.work or Path("out/nas-bench" + ("" if data == "digits" else f"-{data}"))
    work.mkdir(parents=True, exist_ok=True)
    space = load_space(data)
    splits = search_data(data, space)
    records: list[dict] = []
    if args.out.is_file():  # the other data set's records stay
        records = [r for r in json.loads(args.out.read_text()) if r.get("data", "digits") != data]

    def write(record: dict) -> None:
        records.append(
            {"data": data, **record, "machine": machine["cpu"], "threads": machine["threads"]}
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(records, indent=2) + "\n")

    supernet_cfg = SupernetConfig(epochs=args.epochs)
    zoo = create_float_model(base_name, checkpoint=ensure_trained(base_name))
    zoo_top1 = int_top1(zoo, splits)
    full_train = builtin_data(data).split("train", space.img_size)
    scratch = [
        fit_seeded(
            lambda: create_float_model(base_name),
            replace(recipe, shift=supernet_cfg.shift, seed=seed),
            desc=f"train {base_name} with the supernet's shift, seed {seed}",
            train=full_train,
        )
        for seed in range(args.seeds)
    ]
    scratch_top1s = [int_top1(m, splits) for m in scratch]
    print(
        f"{base_name} integer top-1: zoo checkpoint {100 * zoo_top1:.1f}%, with shift "
        f"{supernet_cfg.shift} {', '.join(f'{100 * t:.1f}' for t in scratch_top1s)}%",
        flush=True,
    )
    supernet_path = work / "supernet.pt"
    resumed = [str(p) for p in (supernet_path, work / "latency" / "state.json") if p.exists()]
    if resumed:  # kept, not thrown away; but the times then leave out the earlier run's part
        print(f"resuming from {', '.join(resumed)}: search_s leaves out that work", flush=True)
    t0 = time.time()
    train_supernet(space, splits.train, supernet_path, supernet_cfg)
    supernet_s = time.time() - t0
    net, _ = load_supernet(supernet_path)
    zoo_choice = asdict(choice_of_arch(space, vit_arch(zoo)))  # the zoo ViT in the space
    inherited_ft_top1s = finetuned_top1s(net, zoo_choice, splits, args.seeds, recipe=recipe)
    print(
        f"{base_name} from its inherited supernet weights, fine-tuned: "
        f"{', '.join(f'{100 * t:.1f}' for t in inherited_ft_top1s)}%",
        flush=True,
    )
    baselines = [
        ("zoo checkpoint", [zoo_top1]),
        ("zoo recipe + shift, from scratch", scratch_top1s),
        ("zoo recipe + shift, from inherited supernet weights", inherited_ft_top1s),
    ]
    baseline_recipe, baseline_runs = max(baselines, key=lambda b: float(np.mean(b[1])))
    baseline_top1 = float(np.mean(baseline_runs))
    baseline_model = scratch[0]  # one shape: every training has the same latency

    with tempfile.TemporaryDirectory() as cache, start_tracker() as tracker:
        with start_host_server(tracker.port, "host-bench"):
            wait_for_device(connect_tracker("127.0.0.1", tracker.port), "host-bench", 60)
            address = f"127.0.0.1:{tracker.port}"
            meter = LatencyMeter(address, "host-bench", "host", splits.val.images[:32], Path(cache))
            (m,) = meter.measure_all([(vit_arch(baseline_model), lambda: baseline_model)])
            baseline_ms = m.ms
            print(
                f"baseline {base_name} ({baseline_recipe}): integer top-1 "
                f"{100 * baseline_top1:.2f}% (mean), {baseline_ms:.3f} ms on the device",
                flush=True,
            )
            config = EvolutionConfig(population=args.population, generations=args.generations)
            t1 = time.time()
            request = SearchRequest(
                supernet_path,
                work / "latency",
                data=data,
                constraints=Constraints(max_latency_ms=baseline_ms),
                config=config,
                tracker=address,
                key="host-bench",
                target="host",
                cache_dir=Path(cache),
                finetune=finetune_config(0, recipe),
            )  # a fresh cache: every figure is this run's
            summary = run_search(request)
            search_s = supernet_s + (time.time() - t1)
    inherited_top1 = int_top1(_extracted(net, summary.best_arch), splits)
    exported = load_hetero_checkpoint(work / "latency" / "best.pt")
    best_runs = finetuned_top1s(
        net, summary.best_arch, splits, args.seeds, first=exported, recipe=recipe
    )
    print(
        f"best subnet: inherited {100 * inherited_top1:.1f}%, fine-tuned "
        f"{', '.join(f'{100 * t:.1f}' for t in best_runs)}%",
        flush=True,
    )
    t2 = time.time()
    ranking = ranking_check(
        net,
        splits,
        count=5,
        epochs=args.ranking_epochs,
        seeds=args.ranking_seeds,
        progress=True,
        shift=supernet_cfg.shift,
    )
    ranking_s = time.time() - t2
    write(
        {
            "case": f"{data}, latency budget = {base_name}'s measured latency",
            "baseline": base_name,
            "baseline_top1": baseline_top1,
            "baseline_latency_ms": baseline_ms,
            "baseline_recipe": baseline_recipe,
            "baseline_trainings": {name: runs for name, runs in baselines},
            "top1": f"integer-only, test split ({len(splits.test)} images), mean of "
            f"{args.seeds} seeds",
            "supernet_epochs": args.epochs,
            "shift": supernet_cfg.shift,
            "best_top1": float(np.mean(best_runs)),
            "best_top1_runs": best_runs,
            "best_inherited_top1": inherited_top1,
            "finetune": (None if summary.finetune is None else asdict(summary.finetune)),
            "best_latency_ms": summary.best_latency_ms,
            "best_arch": summary.best_arch,
            "predictor_mape": summary.predictor_mape,
            "kendall_tau": ranking["kendall_tau"],
            "search_s": search_s,
            "resumed_from": resumed,
            "supernet_s": supernet_s,
            "ranking_s": ranking_s,
            "best_val_top1": summary.best_val_top1,
            "best_bit_exact": summary.bit_exact,
            "evaluated": summary.evaluated,
            "ranking": ranking["subnets"],
            "ranking_images": ranking["images"],
            "ranking_seeds": ranking["seeds"],
            "ranking_epochs": args.ranking_epochs,
        }
    )
    print(json.dumps(records[-1], indent=1), flush=True)

    # the same search under a memory budget: 80% of the baseline library's
    from intvit.deploy.compile import plan_memory
    from intvit.quant.calibrate import calibrate

    base_mem = plan_memory(calibrate(baseline_model, splits.val.images[:8]), "host")
    budget = int(0.8 * (base_mem.activation_bytes + base_mem.weight_bytes))
    t3 = time.time()
    mem_summary = run_search(
        SearchRequest(
            supernet_path,
            work / "memory",
            data=data,
            constraints=Constraints(max_memory_bytes=budget),
            config=EvolutionConfig(population=args.population, generations=args.generations),
            cache_dir=work / "memory-cache",
            finetune=finetune_config(0, recipe),
        )
    )
    mem_search_s = time.time() - t3
    lib_mem = mem_summary.library_memory
    mem_exported = load_hetero_checkpoint(work / "memory" / "best.pt")
    mem_runs = finetuned_top1s(
        net, mem_summary.best_arch, splits, args.seeds, first=mem_exported, recipe=recipe
    )
    write(
        {
            "case": f"{data}, memory budget = 80% of {base_name}'s activations + weights",
            "baseline": base_name,
            "baseline_top1": baseline_top1,
            "baseline_recipe": baseline_recipe,
            "baseline_memory_bytes": base_mem.activation_bytes + base_mem.weight_bytes,
            "memory_budget_bytes": budget,
            "best_top1": float(np.mean(mem_runs)),
            "best_top1_runs": mem_runs,
            "best_inherited_top1": int_top1(_extracted(net, mem_summary.best_arch), splits),
            "best_arch": mem_summary.best_arch,
            "best_memory_bytes": lib_mem.activation_bytes + lib_mem.weight_bytes,
            "within_budget": lib_mem.activation_bytes + lib_mem.weight_bytes <= budget,
            "search_s": mem_search_s,
            "best_bit_exact": mem_summary.bit_exact,
        }
    )
    print(json.dumps(records[-1], indent=1))
    print(f"wrote {args.out}")
    return 0


def _extracted(net, choice: dict):
    from intvit.nas.extract import extract_subnet
    from intvit.nas.space import SubnetChoice

    return extract_subnet(net, SubnetChoice.from_dict(choice))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
