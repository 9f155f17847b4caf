"""MCUFormer's search-space evolution (``intvit nas evolve-space``): sub-space windows, the
score and the evolution step, bad settings, and (slow) a whole run that resumes after an
interrupt to the same result and writes a space the supernet trainer takes."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from intvit.models.data import ArraySplit
from intvit.models.datasets import digits
from intvit.nas.space import load_space, space_from_dict
from intvit.nas.space_evolution import (
    CandidateResult,
    EvolutionConfig,
    SubSpace,
    all_subspaces,
    evolve,
    initial_candidates,
    optimal_subspace,
    run_evolution,
    score,
)

TINY = {
    "name": "tiny",
    "img_size": 32,
    "patch_size": 8,
    "in_chans": 1,
    "num_classes": 10,
    "embed_dim": [16, 24, 32],
    "depth": [1, 2],
    "heads": [1, 2],
    "mlp_ratio": [1.0, 2.0],
    "head_dim": 8,
}


def test_subspaces_are_windows_of_the_parent():
    digits_space = load_space("digits")  # 3 embed dims, 4 depths, 3 heads, 3 MLP ratios
    subs = all_subspaces(digits_space)
    assert len(subs) == 2 * 3 * 2 * 2 and len({s.key() for s in subs}) == len(subs)
    for sub in subs:
        space = sub.space(digits_space)
        assert set(space.embed_dim) <= set(digits_space.embed_dim) and len(space.embed_dim) == 2
        assert len(space.depth) == 2 and list(space.depth) == sorted(space.depth)
        rng = np.random.default_rng(0)
        assert all(digits_space.contains(space.sample(rng)) for _ in range(3))
    b2 = load_space("mcuformer_b2")  # one rank ratio per sub-space, as MCUFormer's
    sub = initial_candidates(b2, 1, seed=0)[0]
    assert len(sub.space(b2).rank_ratio) == 1
    # moves are clipped to the parent's range
    first = all_subspaces(digits_space)[0]
    assert first.moved("embed_dim", -1, digits_space) == first
    assert first.moved("depth", 5, digits_space).start("depth") == 2


def _result(slot: int, sub: SubSpace, parent, accuracy: float, ratio: float) -> CandidateResult:
    return CandidateResult(
        0, slot, sub.key(), sub.label(parent), accuracy, ratio, score(accuracy, ratio), 1
    )


def test_score_and_evolution_step_follow_the_plane():
    parent = space_from_dict(TINY)
    assert score(0.9, 0.5) == pytest.approx(0.45) and score(0.9, 0.0) == 0.0
    subs = {s.start("embed_dim"): s for s in all_subspaces(parent) if s.start("depth") == 0}
    low, high = subs[0], subs[1]  # embed 16..24 and 24..32, everything else the same
    # scores rise with the embedding window: the worse candidate moves up, the best stays
    moved = evolve(
        [_result(0, low, parent, 0.5, 1.0), _result(1, high, parent, 0.8, 1.0)], parent, 0.01
    )
    assert moved[1] == high
    assert moved[0].start("embed_dim") == 0, "a move onto another candidate is not made"
    other = next(s for s in all_subspaces(parent) if s.start("depth") == 1)
    results = [
        _result(0, low, parent, 0.5, 1.0),
        _result(1, high, parent, 0.8, 1.0),
        _result(2, other, parent, 0.5, 1.0),
    ]
    nxt = evolve(results, parent, 0.01)
    assert nxt[1] == high and nxt[2].start("embed_dim") == other.start("embed_dim") + 1
    # a plane flatter than min_gain moves nothing
    flat = [_result(0, low, parent, 0.5, 1.0), _result(1, high, parent, 0.5001, 1.0)]
    assert evolve(flat, parent, 0.01) == [low, high]
    # the optimal sub-space is the one selected (best) most often
    r = [
        _result(0, low, parent, 0.9, 1.0),
        replace(_result(0, low, parent, 0.9, 1.0), iteration=1),
        replace(_result(1, high, parent, 0.95, 1.0), iteration=2),
    ]
    assert optimal_subspace(r) == (low.key(), 2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"candidates": 0}, "candidates=0 must be an integer >= 1"),
        ({"n_ratio": 1.5}, "n_ratio=1.5 must be an integer"),
        ({"min_gain": -1.0}, "min_gain=-1.0 must be >= 0"),
        ({"max_memory_bytes": 0}, "max_memory_bytes=0"),
    ],
)
def test_bad_settings_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        EvolutionConfig(**{"max_memory_bytes": 100_000, **change})


def test_cli_refuses_a_bad_budget_in_one_line(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "intvit.cli", "nas", "evolve-space", "--space", "digits",
         "--max-memory-kib", "-5", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert run.returncode == 2 and "must be a finite number > 0" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_evolution_resumes_to_the_same_result_and_its_space_trains(tmp_path):
    from intvit.api.nas import EvolveSpaceRequest, run_evolve_space
    from intvit.nas.train import SupernetConfig, load_supernet, train_supernet

    parent = space_from_dict(TINY)
    full = digits("train")
    splits = type("Splits", (), {})()
    splits.train = ArraySplit(full.images[:128], full.labels[:128])
    splits.val = ArraySplit(full.images[1000:1064], full.labels[1000:1064])
    splits.name = "digits-tiny"
    cfg = EvolutionConfig(
        max_memory_bytes=60_000, candidates=3, iterations=2, epochs_per_iteration=1,
        n_acc=2, n_ratio=2, batch_size=32,
    )  # fmt: skip

    def memory_of(choice, net):  # a cheap stand-in with the same contract: bytes by arch
        arch = parent.arch(choice)
        return 4000 * arch.dim * len(arch.blocks) // 8

    whole = run_evolution(parent, splits, tmp_path / "whole", cfg, memory_of, progress=False)
    assert len(whole.results) == 2 * 3
    seen = []

    def stop_after_four(result):
        seen.append(result)
        if len(seen) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evolution(
            parent, splits, tmp_path / "cut", cfg, memory_of, False, lambda _: None,
            stop_after_four,
        )  # fmt: skip
    resumed = run_evolution(parent, splits, tmp_path / "cut", cfg, memory_of, progress=False)
    assert resumed.results == whole.results
    assert resumed.optimal == whole.optimal
    with pytest.raises(ValueError, match="resume with the same settings"):
        run_evolution(
            parent, splits, tmp_path / "cut", replace(cfg, n_acc=3), memory_of, progress=False
        )
    optimal = load_space(tmp_path / "whole" / "optimal_space.json")
    assert set(optimal.embed_dim) <= set(parent.embed_dim)
    net_path = train_supernet(
        optimal, splits.train, tmp_path / "opt.pt", SupernetConfig(epochs=1), progress=False
    )
    assert load_supernet(net_path)[0].space == optimal
    # the whole command with the compiled memory plan (digits, one candidate, one iteration)
    req = EvolveSpaceRequest(
        load_space("digits"),
        tmp_path / "cli",
        EvolutionConfig(
            max_memory_bytes=150 * 1024, candidates=2, iterations=1, epochs_per_iteration=1,
            n_acc=1, n_ratio=2,
        ),
        progress=False,
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    summary = run_evolve_space(req)
    assert (tmp_path / "cli" / "space_evolution.png").stat().st_size > 10_000
    # the ratio counts subnets whose compiled plan fits: the cached plans say the same
    cache = json.loads((tmp_path / "cache" / "memory-host.json").read_text())
    for r in summary.results:
        assert r.ratio == sum(m <= 150 * 1024 for m in r.memory_bytes) / 2
        for m in r.memory_bytes:
            assert m in {v["activation_bytes"] + v["weight_bytes"] for v in cache.values()}
