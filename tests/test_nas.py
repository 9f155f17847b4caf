"""Architecture search: spaces and their errors, the weight-entangled supernet and exact subnet
extraction, slice-only updates, resumable supernet training and search, and the whole search
on a local RPC device with a tiny space and budget."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from intvit.models.data import ArraySplit
from intvit.models.datasets import digits
from intvit.nas.extract import extract_subnet
from intvit.nas.measure import STATISTIC
from intvit.nas.optim import LazyAdamW
from intvit.nas.search import (
    Candidate,
    Constraints,
    Evaluator,
    EvolutionConfig,
    SearchState,
    crossover,
    evolve,
    mutate,
    pareto_front,
)
from intvit.nas.space import SubnetChoice, load_space, shipped_spaces, space_from_dict
from intvit.nas.supernet import Supernet
from intvit.nas.train import SupernetConfig, load_supernet, train_supernet

TINY = {
    "name": "tiny",
    "img_size": 32,
    "patch_size": 8,
    "in_chans": 1,
    "num_classes": 10,
    "embed_dim": [16, 24],
    "depth": [1, 2],
    "heads": [1, 2],
    "mlp_ratio": [1.0, 2.0],
    "head_dim": 8,
}


@pytest.fixture(scope="module")
def tiny_splits():
    full = digits("train")
    return (
        ArraySplit(full.images[:128], full.labels[:128]),
        ArraySplit(full.images[1000:1064], full.labels[1000:1064]),
    )


def test_shipped_spaces_load():
    names = shipped_spaces()
    assert {"digits", "autoformer_t", "autoformer_s", "autoformer_b", "mcuformer_b2"} <= set(names)
    b2 = load_space("mcuformer_b2")
    assert b2.rank_ratio[0] == 0.4 and b2.rank_ratio[-1] == 0.95 and len(b2.rank_ratio) == 12
    assert load_space("autoformer_t").embed_dim == (192, 216, 240)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"heads": []}, r"heads must be a non-empty list"),
        ({"depth": [0, 2]}, r"depth has 0; every choice must be an integer >= 1"),
        ({"mlp_ratio": [-1.0]}, r"mlp_ratio has -1.0"),
        ({"rank_ratio": [1.5]}, r"rank_ratio has 1.5; every choice must be a number in \(0, 1\]"),
        ({"patch_size": 5}, r"patch_size=5 does not divide img_size=32"),
        ({"embdim": [3]}, r"unknown field\(s\) embdim"),
    ],
)
def test_bad_spaces_name_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        space_from_dict({**TINY, **change})
    bad = dict(TINY)
    del bad["depth"]
    with pytest.raises(ValueError, match="lacks depth"):
        space_from_dict(bad)


def test_bad_space_files(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{nope")
    with pytest.raises(ValueError, match=r"s.json' is not JSON"):
        load_space(path)
    with pytest.raises(ValueError, match="neither a file nor a shipped space"):
        load_space("no_such_space")


@pytest.mark.parametrize("low_rank", [False, True])
def test_extracted_subnet_equals_the_supernet(low_rank):
    space = space_from_dict({**TINY, **({"rank_ratio": [0.5, 1.0]} if low_rank else {})})
    torch.manual_seed(0)
    net = Supernet(space).eval()
    rng = np.random.default_rng(0)
    x = torch.randn(2, 1, 32, 32)
    for _ in range(6):
        choice = space.sample(rng)
        with torch.no_grad():
            torch.testing.assert_close(
                extract_subnet(net, choice)(x), net(x, choice), rtol=0, atol=0
            )


def test_a_step_updates_only_the_subnets_slice():
    space = space_from_dict(TINY)
    torch.manual_seed(0)
    net = Supernet(space)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = LazyAdamW(net.parameters(), lr=1e-2)
    small = SubnetChoice(16, (1,), (1.0,))
    x, y = torch.randn(4, 1, 32, 32), torch.arange(4)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x, small), y).backward()
        opt.step()
    after = net.state_dict()
    assert torch.equal(after["blocks.1.qkv.weight"], before["blocks.1.qkv.weight"])  # depth 1
    w0, w1 = before["blocks.0.fc1.weight"], after["blocks.0.fc1.weight"]
    assert not torch.equal(w1[:16, :16], w0[:16, :16])  # hidden 16 of 48, dim 16 of 24
    assert torch.equal(w1[16:], w0[16:]) and torch.equal(w1[:, 16:], w0[:, 16:])
    q0, q1 = before["blocks.0.qkv.weight"], after["blocks.0.qkv.weight"]
    assert torch.equal(q1[8:16], q0[8:16])  # q of head 2 (attn 8 of 16 per block)


def test_supernet_training_resumes_bit_identically(tmp_path, tiny_splits):
    space = space_from_dict(TINY)
    train, _ = tiny_splits
    cfg = SupernetConfig(epochs=2, batch_size=32)
    whole = train_supernet(space, train, tmp_path / "whole.pt", cfg, progress=False)
    assert torch.load(whole, weights_only=True)["epoch"] == 2
    # an interrupted run: epoch 1 done, then resumed
    first = tmp_path / "first.pt"

    class Stop(Exception):
        pass

    import intvit.nas.train as nas_train

    original = nas_train._save

    def save_then_stop(path, b):  # the run is killed right after its first checkpoint
        original(path, b)
        if b["epoch"] == 1:
            raise Stop

    nas_train._save = save_then_stop
    try:
        with pytest.raises(Stop):
            train_supernet(space, train, first, cfg, progress=False)
    finally:
        nas_train._save = original
    assert torch.load(first, weights_only=True)["epoch"] == 1
    train_supernet(space, train, first, cfg, progress=False)
    a = torch.load(whole, weights_only=True)["supernet"]
    b = torch.load(first, weights_only=True)["supernet"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="resume with the same settings"):
        train_supernet(space, train, first, SupernetConfig(epochs=3, lr=1e-3), progress=False)


def test_mutation_and_crossover_stay_in_the_space():
    space = load_space("digits")
    rng = np.random.default_rng(3)
    pop = [space.sample(rng) for _ in range(10)]
    for _ in range(200):
        a, b = pop[int(rng.integers(10))], pop[int(rng.integers(10))]
        assert space.contains(mutate(space, a, rng, 0.2, 0.4))
        assert space.contains(crossover(a, b, rng))


@pytest.fixture(scope="module")
def tiny_supernet(tmp_path_factory, tiny_splits):
    path = tmp_path_factory.mktemp("nas") / "supernet.pt"
    train_supernet(space_from_dict(TINY), tiny_splits[0], path, SupernetConfig(epochs=1))
    return path


def test_search_honours_the_constraint_and_resumes(tiny_supernet, tiny_splits):
    net, _ = load_supernet(tiny_supernet)
    space = net.space
    limits = Constraints(max_params=30_000)
    cfg = EvolutionConfig(population=4, parents=2, crossover=2, mutation=2, generations=3)
    evaluator = Evaluator(net, tiny_splits[1], tiny_splits[1].images[:8])

    whole = evolve(space, evaluator, limits, cfg, SearchState({}, {}), lambda s: None, False)
    assert all(c.params <= 30_000 for c in whole.history.values())

    saved: list[str] = []

    class Stop(Exception):
        pass

    def save_then_stop(state):
        saved.append(state.to_json(space))
        if state.generation == 1:
            raise Stop

    with pytest.raises(Stop):
        evolve(space, evaluator, limits, cfg, SearchState({}, {}), save_then_stop, False)
    data = json.loads(saved[-1])
    path = Path(tiny_supernet).with_name("state.json")
    path.write_text(saved[-1])
    state = SearchState.load(path, space, data["config"], data["constraints"])
    resumed = evolve(space, evaluator, limits, cfg, state, lambda s: None, False)
    assert resumed.generation == 3
    assert set(resumed.history) == set(whole.history)
    assert resumed.population == whole.population


def test_fitness_breaks_top1_ties_by_validation_loss(tiny_supernet, tiny_splits):
    """Equal top-1 (a saturated validation split): the lower validation loss is fitter, so a
    dearer subnet with a lower loss stays on the Pareto front and a dearer one with a higher
    loss does not; a higher top-1 still wins whatever its loss. The evaluator's loss is the
    cross-entropy of the supernet's logits."""
    c = SubnetChoice(16, (1,), (1.0,))

    def cand(top1, loss, ms):
        return Candidate(c, top1, 0, 0, latency_pred_ms=ms, val_loss=loss)

    cheap, better, worse = cand(0.9, 0.5, 1.0), cand(0.9, 0.3, 2.0), cand(0.9, 0.4, 3.0)
    best = cand(0.95, 0.9, 4.0)
    front = pareto_front([worse, best, better, cheap], "latency_pred_ms")
    assert front == [cheap, better, best]
    assert max([cheap, worse, better], key=lambda x: x.fitness) is better
    assert cand(0.9, None, 1.0).fitness < cheap.fitness

    net, _ = load_supernet(tiny_supernet)
    val = tiny_splits[1]
    choice = net.space.largest()
    top1, loss = Evaluator(net, val, val.images[:8]).score(choice)
    with torch.no_grad():
        logits = net(torch.from_numpy(val.images), choice)
    labels = torch.from_numpy(val.labels)
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)))
    assert top1 == pytest.approx(float((logits.argmax(-1) == labels).float().mean()))


@pytest.mark.slow
def test_whole_search_on_a_local_rpc_device(tiny_supernet, tmp_path):
    """1 epoch, 2 generations, population 4, on a local device: the latency budget holds for
    the measured best, and its exported library (fine-tuned for an epoch) is bit-exact against
    its reference."""
    from intvit.api.nas import SearchRequest, run_search
    from intvit.deploy.rpc import connect_tracker, start_host_server, start_tracker, wait_for_device
    from intvit.nas.finetune import FinetuneConfig

    with start_tracker(log_dir=tmp_path) as tracker:
        with start_host_server(tracker.port, "nas-host", log_dir=tmp_path):
            wait_for_device(connect_tracker("127.0.0.1", tracker.port), "nas-host", 60)
            config = EvolutionConfig(
                population=4,
                generations=2,
                parents=2,
                crossover=2,
                mutation=2,
                seed_measurements=4,
                final_measurements=2,
            )
            request = SearchRequest(
                tiny_supernet,
                tmp_path / "out",
                data="digits",
                constraints=Constraints(max_latency_ms=50.0),
                config=config,
                tracker=f"127.0.0.1:{tracker.port}",
                key="nas-host",
                target="host",
                progress=False,
                cache_dir=tmp_path / "cache",
                finetune=FinetuneConfig(epochs=1),
            )
            summary = run_search(request)
    assert summary.finetune.epochs == 1
    assert summary.bit_exact is True
    assert summary.best_latency_ms is not None and summary.best_latency_ms <= 50.0
    assert summary.predictor_mape is not None
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["finetune"]["epochs"] == 1 and written["library_memory"]["weight_bytes"] > 0
    out = tmp_path / "out"
    for name in ("evaluated.json", "pareto.json", "pareto.png", "best.so", "best.so.json"):
        assert (out / name).is_file(), name
    cache = json.loads((tmp_path / "cache" / f"latency-nas-host-host-{STATISTIC}.json").read_text())
    assert len(cache) >= 4  # the seed measurements, reusable by a later run


def test_cli_extract_and_bad_files(tiny_supernet, tmp_path):
    cli = [sys.executable, "-m", "intvit.cli", "nas"]
    choice = tmp_path / "arch.json"
    choice.write_text(json.dumps(asdict(SubnetChoice(24, (2, 1), (2.0, 1.0)))))
    out = tmp_path / "sub.pt"
    run = subprocess.run(
        [*cli, "extract", str(tiny_supernet), "--arch", str(choice), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    net, _ = load_supernet(tiny_supernet)
    from intvit.models.hetero_vit import load_hetero_checkpoint

    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            load_hetero_checkpoint(out)(x),
            net(x, SubnetChoice(24, (2, 1), (2.0, 1.0))),
            rtol=0,
            atol=0,
        )
    tuned = tmp_path / "tuned.pt"
    extract = [*cli, "extract", str(tiny_supernet), "--arch", str(choice), "-o", str(tuned)]
    run = subprocess.run(
        [*extract, "--finetune-epochs", "1", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "fine-tuned" in run.stdout
    body = torch.load(tuned, weights_only=True)
    from intvit.models.hetero_vit import META_KEY

    assert body[META_KEY]["finetune"]["epochs"] == 1
    assert not torch.equal(body["model"]["head.weight"], net.head.weight.detach()[:, :24])
    run = subprocess.run(
        [*extract, "--finetune-epochs", "-1"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "--finetune-epochs" in run.stderr
    choice.write_text(json.dumps(asdict(SubnetChoice(24, (3,), (2.0,)))))
    run = subprocess.run(
        [*cli, "extract", str(tiny_supernet), "--arch", str(choice), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "is not in search space" in run.stderr
    assert "Traceback" not in run.stderr
    not_a_supernet = tmp_path / "x.pt"
    torch.save({"a": 1}, not_a_supernet)
    run = subprocess.run(
        [*cli, "search", str(not_a_supernet), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "not an intvit supernet checkpoint" in run.stderr
    bad_space = tmp_path / "space.json"
    bad_space.write_text(json.dumps({**TINY, "heads": [0]}))
    run = subprocess.run(
        [*cli, "train-supernet", "--space", str(bad_space), "-o", str(tmp_path / "s.pt")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "heads has 0" in run.stderr


def test_finetune_starts_from_the_inherited_weights(tiny_supernet, tiny_splits):
    """Fine-tuning trains the extracted subnet on train + validation (seeded: twice the same
    weights), lowers its loss there, and leaves the supernet as it was."""
    from intvit.nas.data import SearchData
    from intvit.nas.finetune import FinetuneConfig, finetune, finetune_split

    net, _ = load_supernet(tiny_supernet)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    splits = SearchData(tiny_splits[0], tiny_splits[1], tiny_splits[1], "digits")
    both = finetune_split(splits)
    assert len(both) == len(tiny_splits[0]) + len(tiny_splits[1])
    np.testing.assert_array_equal(both.labels[-len(tiny_splits[1]) :], tiny_splits[1].labels)
    choice = SubnetChoice(24, (2, 1), (2.0, 1.0))
    x, y = torch.from_numpy(both.images), torch.from_numpy(both.labels)

    def loss(model) -> float:
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model(x), y))

    cfg = FinetuneConfig(epochs=3, lr=2e-3, shift=0)
    inherited = extract_subnet(net, choice)
    start = loss(inherited)
    a = finetune(extract_subnet(net, choice), splits, cfg, progress=False)
    b = finetune(extract_subnet(net, choice), splits, cfg, progress=False)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=name)
    assert loss(a) < start
    assert not a.training
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_latency_predictor_recovers_a_cost_sum():
    """Latencies made as a known non-negative sum of the cost terms (with a 3% multiplicative
    wobble from a seeded generator) are predicted for unseen subnets within 5%: the cost model
    finds the sum, and the residual trees do not undo it."""
    from intvit.nas.cost import COST_TERMS, cost_terms
    from intvit.nas.predictor import LatencyPredictor, mape

    space = load_space("digits")
    rng = np.random.default_rng(5)
    archs = list(
        {
            json.dumps(a.to_dict()): a for a in (space.arch(space.sample(rng)) for _ in range(80))
        }.values()
    )
    coef = np.array([0.002, 0.001, 0.015, 0.004, 0.02, 0.01, 0.03])
    assert len(coef) == len(COST_TERMS)
    ms = np.array([cost_terms(a) @ coef for a in archs]) * rng.uniform(0.97, 1.03, len(archs))
    fitted = LatencyPredictor().fit(archs[:24], ms[:24])
    assert mape(fitted.predict(archs[24:]), ms[24:]) < 0.05
    with pytest.raises(ValueError, match=">= 4 measured subnets"):
        LatencyPredictor().fit(archs[:3], ms[:3])


def test_ranking_check_retrains_each_subnet_per_seed(tiny_supernet, tiny_splits):
    from types import SimpleNamespace

    from intvit.nas.ranking import ranking_check

    net, _ = load_supernet(tiny_supernet)
    train, val = tiny_splits
    test = ArraySplit(train.images[64:96], train.labels[64:96])
    splits = SimpleNamespace(
        train=ArraySplit(train.images[:64], train.labels[:64]), val=val, test=test
    )
    first = ranking_check(net, splits, count=3, epochs=1, seeds=2)
    assert first["images"] == len(val) + len(test) and first["seeds"] == 2
    for row in first["subnets"]:
        assert len(row["retrained_top1_runs"]) == 2
        assert row["retrained_top1"] == pytest.approx(np.mean(row["retrained_top1_runs"]))
    again = ranking_check(net, splits, count=3, epochs=1, seeds=2)
    assert again["subnets"] == first["subnets"]  # seeded: the same figures
    with pytest.raises(ValueError, match="seeds=0"):
        ranking_check(net, splits, count=3, epochs=1, seeds=0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"population": ["nope"]}, "population entry 'nope' is not in its history"),
        ({"history": {"k": {"bogus": 1}}}, "history entry 'k' is malformed"),
        ({"history": []}, "history is a list, not a dict"),
        ({"generation": -1}, "generation -1 is not an integer >= 0"),
        ({"measured": {"k": 0}}, "measured latency 0 of 'k' is not > 0"),
    ],
)
def test_a_search_state_with_bad_entries_is_named(tmp_path, edit, message):
    """A state file of the same space, settings and constraints whose entries are bad: the
    field and the entry are named, not an AttributeError or KeyError later."""
    space = load_space("digits")
    config, limits = {"seed": 0}, {"max_params": 1}
    body = json.loads(SearchState(config, limits).to_json(space))
    path = tmp_path / "state.json"
    path.write_text(json.dumps({**body, **edit}))
    with pytest.raises(ValueError, match=re.escape(message)):
        SearchState.load(path, space, config, limits)
