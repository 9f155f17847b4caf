"""Benchmark: AutoFormer's "Retrain" column for the digits search. The subnet that
``benchmarks/nas.py`` found under digits_vit's latency, and digits_vit itself, each trained
from scratch with one recipe (the zoo's: 60 epochs on all 1200 digits train images, plus the
supernet's random shift), several seeds each; integer-only top-1 on the test split (the
search never saw it), mean and per seed.

    .venv/bin/python benchmarks/nas_retrain.py   # after benchmarks/nas.py

With inherited weights the searched subnet has seen 1000 images through a shared supernet,
digits_vit 1200 on its own; retrained alike, the two differ only by their architecture.
Writes benchmarks/results/nas_retrain.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search", type=Path, default=RESULTS / "nas.json")
    parser.add_argument("--out", type=Path, default=RESULTS / "nas_retrain.json")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds} must be >= 1")
    if not args.search.is_file():
        parser.error(f"{args.search} does not exist: run benchmarks/nas.py first")

    from nas import int_top1  # benchmarks/nas.py, beside this script

    from intvit.bench.records import machine_info
    from intvit.models.hetero_vit import HeteroViT
    from intvit.models.train import TrainConfig, fit_seeded
    from intvit.models.zoo import create_float_model
    from intvit.nas.data import search_data
    from intvit.nas.space import SubnetChoice, load_space

    search = json.loads(args.search.read_text())[0]
    shift = search["shift"]
    space = load_space("digits")
    choice = SubnetChoice.from_dict(search["best_arch"])
    splits = search_data("digits")
    models = {
        "digits_vit": lambda: create_float_model("digits_vit"),
        "searched": lambda: HeteroViT(space.arch(choice)),
    }
    rows: dict[str, list[float]] = {name: [] for name in models}
    t0 = time.time()
    for seed in range(args.seeds):
        for name, make in models.items():
            cfg = TrainConfig(seed=seed, shift=shift)
            top1 = int_top1(fit_seeded(make, cfg, desc=f"{name} seed {seed}"), splits)
            rows[name].append(top1)
            print(f"{name} seed {seed}: integer top-1 {100 * top1:.1f}%", flush=True)
    record = {
        "case": "digits: searched subnet vs digits_vit, both retrained with one recipe",
        "recipe": {"epochs": TrainConfig().epochs, "train_images": 1200, "shift": shift},
        "searched_arch": search["best_arch"],
        "searched_latency_ms": search["best_latency_ms"],
        "digits_vit_latency_ms": search["baseline_latency_ms"],
        "seeds": args.seeds,
        "digits_vit_top1_runs": rows["digits_vit"],
        "searched_top1_runs": rows["searched"],
        "digits_vit_top1": float(np.mean(rows["digits_vit"])),
        "searched_top1": float(np.mean(rows["searched"])),
        "seconds": time.time() - t0,
        "machine": machine_info()["cpu"],
    }
    args.out.write_text(json.dumps([record], indent=2) + "\n")
    print(json.dumps(record, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
