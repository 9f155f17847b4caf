"""Heterogeneous ViTs: typed archs and their errors, the float model and its checkpoint, the
integer path (reference and compiled library, bit-exact), and the memory report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import tvm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tvm import relax

from intvit.deploy.compile import compile_int_model, export, lowered_module, scheduled_module
from intvit.deploy.manifest import read_manifest
from intvit.deploy.memory import memory_report, peak_live_bytes
from intvit.deploy.targets import get_preset
from intvit.models.datasets import digits
from intvit.models.hetero_vit import (
    HeteroViT,
    load_hetero_checkpoint,
    resolve_arch,
    save_hetero_checkpoint,
)
from intvit.quant.arch import BlockArch, SwinArch, VitArch, arch_from_dict, read_arch
from intvit.quant.artifact import load_int_model, save_int_model
from intvit.quant.calibrate import calibrate
from intvit.quant.config import QuantConfig
from intvit.quant.reference import quantize_input, reference_forward
from intvit.quant.shadow import shadow_forward
from intvit.schedules.hostcpu import host_cpu
from intvit.schedules.intrinsics import has_vnni
from intvit.topi.kinds import LOW_RANK_GEMM, kernel_kind

B = BlockArch
#: The three fixed heterogeneous configs (also run on the emulated device).
CONFIGS = {
    "low-rank": VitArch(
        32, 8, 1, 64, 10, (B(4, 64, 128, 24, 32, 40, 48), B(2, 32, 96, 16, 8, 16, 20))
    ),
    "odd-widths": VitArch(32, 8, 1, 48, 10, (B(3, 72, 100), B(3, 72, 100))),
    "per-block": VitArch(
        32, 4, 1, 64, 10, (B(4, 64, 128), B(2, 32, 64), B(8, 64, 256), B(1, 16, 32)), 2, True
    ),
}


def _int_model(arch: VitArch, seed: int = 0):
    torch.manual_seed(seed)
    model = HeteroViT(arch).eval()
    return model, calibrate(model, digits("calib").images[:32])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: B(3, 64, 128), r"heads=3 does not divide attn_dim=64"),
        (lambda: B(4, 64, 128, qkv_rank=0), r"qkv_rank=0 must be a positive integer"),
        (lambda: B(4, 64, 128, fc1_rank=65), r"fc1_rank=65 is above min\(in, out\) = 64"),
        (lambda: B(4, 64, 0), r"mlp_hidden=0 must be a positive integer"),
        (lambda: B(4, -8, 16), r"attn_dim=-8 must be a positive integer"),
    ],
)
def test_block_errors_name_the_field(make, message):
    with pytest.raises(ValueError, match=message):
        VitArch(32, 8, 1, 64, 10, (make(),))


def test_arch_errors_name_the_field():
    blk = (B(4, 64, 128),)
    with pytest.raises(ValueError, match=r"patch_size=5 does not divide img_size=32"):
        VitArch(32, 5, 1, 64, 10, blk)
    with pytest.raises(ValueError, match=r"dim=0 must be a positive integer"):
        VitArch(32, 8, 1, 0, 10, blk)
    with pytest.raises(ValueError, match=r"depth >= 1"):
        VitArch(32, 8, 1, 64, 10, ())
    with pytest.raises(ValueError, match=r"unknown field\(s\) hedas"):
        arch_from_dict(
            {"family": "vit", "version": 2, **VitArch(32, 8, 1, 64, 10, blk).to_dict(), "hedas": 1}
        )
    with pytest.raises(ValueError, match=r"family 'cnn' is unknown"):
        arch_from_dict({"family": "cnn"})
    with pytest.raises(ValueError, match=r"version 7"):
        arch_from_dict({"family": "vit", "version": 7})


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_arch_round_trips(name):
    arch = CONFIGS[name]
    assert arch_from_dict(json.loads(json.dumps(arch.to_dict()))) == arch


def test_version_1_arch_dicts_migrate():
    v1 = {
        "family": "vit",
        "img_size": 32,
        "patch_size": 8,
        "in_chans": 1,
        "dim": 64,
        "depth": 3,
        "heads": 4,
        "mlp_hidden": 128,
        "num_classes": 10,
        "prefix_tokens": 1,
        "distilled": False,
    }
    arch = arch_from_dict(v1)
    assert arch == VitArch.uniform(
        img_size=32,
        patch_size=8,
        in_chans=1,
        dim=64,
        depth=3,
        heads=4,
        mlp_hidden=128,
        num_classes=10,
    )
    assert arch.is_uniform
    swin = {
        "family": "swin",
        "img_size": 32,
        "patch_size": 2,
        "in_chans": 1,
        "embed_dim": 32,
        "num_classes": 10,
        "distilled": False,
        "stages": [
            {
                "merge": False,
                "dim": 32,
                "grid": 16,
                "heads": 2,
                "mlp_hidden": 64,
                "blocks": [{"window": 4, "shift": 0}, {"window": 4, "shift": 2}],
            }
        ],
    }
    assert isinstance(arch_from_dict(swin), SwinArch)


def test_version_1_artifact_loads(tmp_path):
    """An artifact written by format version 1 (the untyped arch dict) loads, migrated."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    torch.manual_seed(0)
    from intvit.models.zoo import create_float_model

    model = calibrate(create_float_model("digits_vit"), digits("calib").images[:16])
    path = save_int_model(model, tmp_path / "v2.st")
    with safe_open(str(path), framework="numpy") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    a = model.arch
    meta["format_version"] = "1"
    meta["arch"] = json.dumps(
        {
            "family": "vit",
            "img_size": a.img_size,
            "patch_size": a.patch_size,
            "in_chans": a.in_chans,
            "dim": a.dim,
            "depth": a.depth,
            "heads": a.blocks[0].heads,
            "mlp_hidden": a.blocks[0].mlp_hidden,
            "num_classes": a.num_classes,
            "prefix_tokens": 1,
            "distilled": False,
        }
    )
    save_file(tensors, str(tmp_path / "v1.st"), metadata=meta)
    old = load_int_model(tmp_path / "v1.st")
    assert old.arch == model.arch
    q = quantize_input(model, digits("test").images[:2])
    np.testing.assert_array_equal(reference_forward(old, q), reference_forward(model, q))


def test_artifact_arch_must_fit_its_tensors(tmp_path):
    """``arch.heads`` edited in an artifact, or a weight of the wrong shape: refused on load."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    _, model = _int_model(CONFIGS["odd-widths"])
    path = save_int_model(model, tmp_path / "m.st")
    with safe_open(str(path), framework="numpy") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    arch = json.loads(meta["arch"])
    arch["blocks"][0]["heads"] = 5
    save_file(tensors, str(tmp_path / "heads.st"), metadata={**meta, "arch": json.dumps(arch)})
    with pytest.raises(ValueError, match=r"blocks\[0\]\.heads=5 does not divide attn_dim=72"):
        load_int_model(tmp_path / "heads.st")
    arch["blocks"][0]["heads"], arch["blocks"][0]["mlp_hidden"] = 3, 96
    save_file(tensors, str(tmp_path / "hidden.st"), metadata={**meta, "arch": json.dumps(arch)})
    with pytest.raises(
        ValueError, match=r"'b0.fc1.w' has shape \(100, 48\); its arch gives \(96, 48\)"
    ):
        load_int_model(tmp_path / "hidden.st")
    scales = json.loads(meta["scales"])
    scales["input"] = -1.0
    save_file(tensors, str(tmp_path / "scale.st"), metadata={**meta, "scales": json.dumps(scales)})
    with pytest.raises(ValueError, match=r"scale 'input' = -1.0 must be finite and > 0"):
        load_int_model(tmp_path / "scale.st")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_shadow_forward_equals_the_float_model(name):
    torch.manual_seed(1)
    model = HeteroViT(CONFIGS[name]).eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(shadow_forward(model, x), model(x), rtol=0, atol=0)


def test_checkpoint_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    model = HeteroViT(CONFIGS["low-rank"]).eval()
    path = save_hetero_checkpoint(model, tmp_path / "m.pt", data="digits")
    loaded = load_hetero_checkpoint(path)
    assert loaded.arch == model.arch
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    body = torch.load(path, weights_only=True)
    body["intvit"]["arch"]["blocks"][0]["qkv_rank"] = 20
    torch.save(body, tmp_path / "bad.pt")
    with pytest.raises(
        ValueError, match=r"does not fit its arch.*blocks\.0\.attn\.qkv\.down\.weight"
    ):
        load_hetero_checkpoint(tmp_path / "bad.pt")
    torch.save({"model": model.state_dict()}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="carries no intvit arch"):
        load_hetero_checkpoint(tmp_path / "plain.pt")


def test_shipped_archs_and_arch_files(tmp_path):
    for name in ("digits_lowrank", "digits_odd", "digits_hetero"):
        assert isinstance(resolve_arch(name), VitArch)
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"img_size": 32, "patch_size": 8, "in_chans": 1, "dim": 64, "num_classes": 10,'
        ' "blocks": [{"heads": 3, "attn_dim": 64, "mlp_hidden": 64}]}'
    )
    with pytest.raises(ValueError, match=r"bad.json'.*heads=3 does not divide attn_dim=64"):
        read_arch(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="is not JSON"):
        read_arch(bad)
    with pytest.raises(ValueError, match="neither an arch file nor a shipped arch"):
        resolve_arch("no_such_arch")


def _compiled_outputs(model, q, preset="host"):
    compiled = compile_int_model(model, preset, batch=q.shape[0])
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    return compiled, vm["main"](tvm.runtime.tensor(q)).numpy()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_heterogeneous_model_bit_exact_on_host(name):
    """Reference forward == compiled library: low-rank linears as one fused kernel of two
    packed GEMMs (int8 ``h`` requantized on the first's register tiles), widths that do not
    divide the tile, per-block heads and MLP widths, a decoupled attention dim."""
    _, model = _int_model(CONFIGS[name])
    q = quantize_input(model, digits("test").images[:3])
    compiled, out = _compiled_outputs(model, q)
    np.testing.assert_array_equal(out, reference_forward(model, q))
    if name == "low-rank":
        # With VNNI every linear of both blocks runs both factors in one kernel. On AVX2
        # alone these 8-bit weights take avx2-pmaddwd (int16 operands), which the int8 h
        # cannot share (avx2-maddubsw fuses 7-bit weights: tests/test_low_rank_kernel.py),
        # so each factor is its own GEMM.
        fused = has_vnni(host_cpu()[1])
        mod = scheduled_module(model, get_preset("host"), q.shape[0])
        kind = {gv.name_hint: kernel_kind(f) for gv, f in mod.functions_items()}
        funcs = [c.func for c in compiled.manifest.calls]
        n_fused = sum(kind.get(f) == LOW_RANK_GEMM for f in funcs)  # calls (functions dedupe)
        assert n_fused == (8 if fused else 0)
        assert any("_lr" in f for f in funcs) != fused  # a first factor on its own, or none


@pytest.mark.slow
@pytest.mark.skipif(not has_vnni(host_cpu()[1]), reason="the linears fuse only with VNNI")
def test_tuning_searches_the_fused_low_rank_tiles_and_applies_them_bit_exactly(tmp_path):
    """``intvit tune --ops low_rank_gemm``: each fused low-rank linear's default tiles are
    measured first, the search measures other tiles, and the build with the records (every
    one replayed) equals the reference forward."""
    from intvit.schedules.database import apply_database
    from intvit.tune.job import TuneConfig, count_records, tune

    _, model = _int_model(CONFIGS["low-rank"])
    db = tmp_path / "db"
    cfg = TuneConfig(trials=16, db=db, trials_per_iter=4, ops=("low_rank_gemm",), progress=False)
    summary = tune(model, cfg, log=lambda *_: None)
    assert summary.failed == 0, summary.last_error
    assert summary.seeded >= 1 and count_records(db) > summary.seeded
    preset = get_preset("host")
    not_replayed: list[str] = []
    tuned = apply_database(
        scheduled_module(model, preset, 1, tunable=True), db, preset.tvm_target(), not_replayed
    )
    applied = [
        gv.name_hint
        for gv, f in tuned.functions_items()
        if kernel_kind(f) == LOW_RANK_GEMM and f.attrs.get("tirx.is_scheduled", False)
    ]
    assert applied and not not_replayed
    q = quantize_input(model, digits("test").images[:2])
    compiled = compile_int_model(model, "host", batch=1, db=db)
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    for image in q:
        np.testing.assert_array_equal(
            vm["main"](tvm.runtime.tensor(image[None])).numpy(),
            reference_forward(model, image[None]),
        )


@st.composite
def vit_archs(draw):
    dim = draw(st.sampled_from([16, 24, 40, 64]))
    blocks = []
    for _ in range(draw(st.integers(1, 3))):
        heads = draw(st.integers(1, 4))
        attn = heads * draw(st.sampled_from([4, 8, 12, 20]))
        hidden = draw(st.integers(8, 96))
        ranks = {}
        for layer, (n_in, n_out) in (
            ("qkv", (dim, 3 * attn)),
            ("proj", (attn, dim)),
            ("fc1", (dim, hidden)),
            ("fc2", (hidden, dim)),
        ):
            if draw(st.booleans()):
                ranks[f"{layer}_rank"] = draw(st.integers(1, min(n_in, n_out)))
        blocks.append(B(heads, attn, hidden, **ranks))
    patch = draw(st.sampled_from([4, 8, 16]))
    distilled = draw(st.booleans())
    return VitArch(32, patch, 1, dim, 10, tuple(blocks), 2 if distilled else 1, distilled)


@pytest.mark.slow
@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(arch=vit_archs())
def test_random_archs_bit_exact_on_host(arch):
    _, model = _int_model(arch, seed=3)
    q = quantize_input(model, digits("test").images[:2])
    _, out = _compiled_outputs(model, q)
    np.testing.assert_array_equal(out, reference_forward(model, q))


def test_kernel_scratch_counts_buffers_at_their_compacted_size():
    """A packed GEMM's own buffers are counted at the size TIR's compaction gives them: the
    register tile's accumulators as one tile, the packed activations whole (every row tile
    reads them), so the count lies between the packed activations and the declared sizes."""
    from intvit.deploy.memory import _buffer_bytes, _walk_tir, kernel_scratch_bytes
    from intvit.schedules.gemm import packed_gemm_func
    from intvit.schedules.intrinsics import gemm_kernel_for

    kernel = gemm_kernel_for(get_preset("host").target)
    if kernel is None:
        pytest.skip("no packed GEMM kernel on this host")
    func = packed_gemm_func((197, 192), "int8", 576, kernel)
    declared = []
    _walk_tir(func.body, lambda node: declared.extend(getattr(node, "alloc_buffers", ())))
    declared_bytes = sum(_buffer_bytes(b) for b in declared)
    packed_x = 197 * 192  # one byte per activation (int8/uint8 operands), rows padded on top
    assert packed_x <= kernel_scratch_bytes(func) < declared_bytes


@pytest.mark.parametrize("name", ["odd-widths", "low-rank"])
def test_memory_plan_against_live_tensors(name, tmp_path):
    """The VM's planned activation storage is at least the peak of live intermediate tensors
    (counted independently, on the unplanned module) and at most twice it; the manifest
    carries it, with the weight bytes and the library's file size."""
    _, model = _int_model(CONFIGS[name])
    mod, lowered = lowered_module(model, "host", 1)
    report = memory_report(mod, lowered)
    live = peak_live_bytes(mod)
    assert live > 0
    assert live <= report.activation_bytes <= 2 * live, (report, live)
    weights = sum(
        v.nbytes for k, v in model.tensors.items() if k.endswith((".w", ".b")) or k.endswith("_q")
    )
    assert report.weight_bytes >= weights  # plus requantization / LayerNorm tables
    compiled = compile_int_model(model, "host")
    lib = export(compiled, "host", tmp_path / "m.so")
    memory = read_manifest(lib).memory
    assert memory.library_bytes == lib.stat().st_size
    assert memory.activation_bytes == report.activation_bytes


def test_quantize_and_compile_a_checkpoint_from_the_cli(tmp_path):
    """``intvit quantize CHECKPOINT`` takes a checkpoint that carries its arch; ``intvit
    compile`` prints the memory report."""
    torch.manual_seed(0)
    ckpt = save_hetero_checkpoint(
        HeteroViT(CONFIGS["odd-widths"]), tmp_path / "m.pt", data="digits"
    )
    art = tmp_path / "m.safetensors"
    cli = [sys.executable, "-m", "intvit.cli"]
    run = subprocess.run(
        [*cli, "quantize", str(ckpt), "-o", str(art), "--quiet"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    run = subprocess.run(
        [*cli, "compile", str(art), "-o", str(tmp_path / "m.so")], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "memory: activations" in run.stdout and "library" in run.stdout
    run = subprocess.run(
        [*cli, "quantize", str(tmp_path / "nothing.pt"), "-o", str(art)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arch", "epochs"), [("digits_lowrank", 150), ("digits_odd", 60), ("digits_hetero", 60)]
)
def test_trained_heterogeneous_models_keep_their_accuracy(arch, epochs, tmp_path):
    """Trained by the built-in trainer (the low-rank one needs 150 epochs to converge), the
    integer-only model is at most 0.5 points below the float top-1 (one-sided, as in the digits
    acceptance test) with >= 98.5% agreement on the 500 digits test images."""
    from intvit.api.eval import evaluate
    from intvit.api.quantize import ModelSpec, quantize
    from intvit.models.train import TrainConfig, train_arch

    ckpt = train_arch(
        resolve_arch(arch), tmp_path / f"{arch}.pt", TrainConfig(epochs=epochs), False
    )
    spec = ModelSpec(str(ckpt))
    float_model, int_model = quantize(spec, QuantConfig(), progress=False)
    result = evaluate(float_model, int_model, spec.split("test", 32), arch)
    assert result.fp32_top1 >= 0.9, result
    assert result.int_top1 >= result.fp32_top1 - 0.005 - 1e-9, result
    assert result.agreement >= 0.985, result
