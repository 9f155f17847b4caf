"""GELU-less models (seed 002): the block-by-block ReLU swap with distillation (one block per
stage, frozen zero fc1 biases, resume after an interruption), checkpoints, quantization with
ReLU fused into fc1's requantization, and the compiled graph (bit-exact, no activation pass).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm import relax

from intvit.api.quantize import fit_config
from intvit.deploy.compile import compile_int_model
from intvit.models.datasets import digits
from intvit.models.gelu_less import (
    ArrayImages,
    DistillConfig,
    block_activation,
    mlp_activation,
    read_meta,
    relu_blocks,
    relu_distill,
    swap_all,
    transformer_blocks,
)
from intvit.models.zoo import create_float_model
from intvit.quant.calibrate import calibrate
from intvit.quant.config import QuantConfig
from intvit.quant.reference import reference_forward
from intvit.schedules.gemm import PACKED_FUNC
from intvit.topi.requantize_params import RequantParams
from intvit.topi.requantize_ref import requantize_ref

CFG = DistillConfig(epochs_per_block=1, lr=1e-3, batch_size=16)


@pytest.fixture(autouse=True)
def _one_thread():
    """Distillation runs are compared bit for bit: one torch thread makes them repeatable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images():
    return ArrayImages(digits("train").images[:48])


def _teacher(name: str = "digits_vit"):
    torch.manual_seed(11)
    return create_float_model(name)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("name", ["digits_vit", "digits_swin"])
def test_each_stage_swaps_exactly_one_block_and_freezes_its_zero_bias(name, images, tmp_path):
    teacher = _teacher(name)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    seen = []

    def on_stage(i, student, loss):
        blocks = transformer_blocks(student)
        seen.append(relu_blocks(student))
        assert [block_activation(b) for b in blocks] == ["relu"] * (i + 1) + ["gelu"] * (
            len(blocks) - i - 1
        )
        for b in blocks[: i + 1]:
            assert not b.mlp.fc1.bias.requires_grad
            assert torch.count_nonzero(b.mlp.fc1.bias) == 0
        for b in blocks[i + 1 :]:
            assert b.mlp.fc1.bias.requires_grad
        assert np.isfinite(loss)

    student = relu_distill(teacher, images, CFG, tmp_path / "s.pt", name, False, on_stage)
    n = len(transformer_blocks(teacher))
    assert seen == [list(range(i + 1)) for i in range(n)]
    assert mlp_activation(student) == "relu"
    assert all(torch.count_nonzero(b.mlp.fc1.bias) == 0 for b in transformer_blocks(student))
    # the teacher is untouched, and distillation did train the rest of the student
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert mlp_activation(teacher) == "gelu"
    w = "blocks.0.mlp.fc2.weight" if name == "digits_vit" else "layers.0.blocks.0.mlp.fc2.weight"
    assert not torch.equal(student.state_dict()[w], before[w])


def test_an_interrupted_run_resumes_after_its_last_finished_block(images, tmp_path):
    teacher = _teacher()
    straight = relu_distill(teacher, images, CFG, tmp_path / "straight.pt", "digits_vit", False)

    out = tmp_path / "resumed.pt"

    def stop_after_second(i, student, loss):
        if i == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        relu_distill(_teacher(), images, CFG, out, "digits_vit", False, stop_after_second)
    assert read_meta(out)["relu_blocks"] == [0, 1]
    stages = []
    resumed = relu_distill(
        _teacher(), images, CFG, out, "digits_vit", False, lambda i, s, loss: stages.append(i)
    )
    assert stages == [2, 3]  # blocks 0 and 1 were not distilled again
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k  # the same model as the uninterrupted run, bit for bit


def test_resume_refuses_a_run_with_other_settings(images, tmp_path):
    out = tmp_path / "s.pt"
    cfg = DistillConfig(epochs_per_block=0)
    relu_distill(_teacher(), images, cfg, out, "digits_vit", False)
    with pytest.raises(ValueError, match="resume with the same settings"):
        relu_distill(_teacher(), images, CFG, out, "digits_vit", False)
    with pytest.raises(ValueError, match="is a run for 'digits_vit', not 'digits_deit'"):
        relu_distill(_teacher("digits_deit"), images, cfg, out, "digits_deit", False)
    (tmp_path / "plain.pt").write_bytes(b"")
    torch.save(_teacher().state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a relu-distill checkpoint"):
        relu_distill(_teacher(), images, cfg, tmp_path / "plain.pt", "digits_vit", False)


def test_checkpoints_load_with_their_relu_blocks_and_partial_ones_are_refused(images, tmp_path):
    out = tmp_path / "s.pt"
    student = relu_distill(_teacher(), images, CFG, out, "digits_vit", False)
    loaded = create_float_model("digits_vit", checkpoint=out)
    assert mlp_activation(loaded) == "relu"
    x = torch.from_numpy(digits("test").images[:4])
    with torch.no_grad():
        assert torch.equal(loaded(x), student(x))

    with pytest.raises(Interrupt):
        relu_distill(_teacher(), images, CFG, tmp_path / "p.pt", "digits_vit", False, _raise_at(0))
    partial = create_float_model("digits_vit", checkpoint=tmp_path / "p.pt")
    with pytest.raises(ValueError, match=r"part GELU, part ReLU \(ReLU in blocks \[0\]\)"):
        calibrate(partial, digits("calib").images[:8], QuantConfig(gelu="relu"))


def _raise_at(block: int):
    def hook(i, student, loss):
        if i == block:
            raise Interrupt

    return hook


def test_gelu_less_models_quantize_with_relu_only():
    model = swap_all(_teacher())
    with pytest.raises(ValueError, match=r"GELU-less .* needs gelu='relu', not 'lut'"):
        calibrate(model, digits("calib").images[:8], QuantConfig())
    assert fit_config(model, QuantConfig()).gelu == "relu"
    assert fit_config(_teacher(), QuantConfig()).gelu == "lut"


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    acc=st.lists(st.integers(-(2**24), 2**24), min_size=1, max_size=64),
    ratio=st.floats(1e-7, 1e-1),
    product_bits=st.sampled_from([32, 64]),
)
def test_relu_is_the_uint8_saturation_of_the_requantization(acc, ratio, product_bits):
    """What fusing ReLU into fc1's epilogue rests on: requantize(max(acc, 0)) equals the plain
    uint8 requantization of acc (monotone, 0 -> 0, negatives saturate to 0)."""
    rq = RequantParams.make(ratio, 25, "uint8", product_bits)
    a = np.asarray(acc, np.int32)
    np.testing.assert_array_equal(requantize_ref(np.maximum(a, 0), rq), requantize_ref(a, rq))


@pytest.mark.parametrize("name", ["digits_vit", "digits_swin"])
@pytest.mark.parametrize("schedules", [True, False], ids=["scheduled", "default"])
def test_compiled_gelu_less_graph_is_bit_exact_with_no_activation_pass(name, schedules):
    model = calibrate(
        swap_all(_teacher(name)), digits("calib").images[:24], QuantConfig(gelu="relu")
    )
    assert all(bp.gelu is None for bp in _blocks(model))
    compiled = compile_int_model(model, "host", batch=2, schedules=schedules)
    funcs = [c.func for c in compiled.manifest.calls]
    assert not [f for f in funcs if "gelu" in f or "relu" in f]
    calls = compiled.manifest.calls
    fc1 = [j for j, c in enumerate(calls) if "fc1" in c.func]
    assert len(fc1) == len(_blocks(model))
    for j in fc1:
        if schedules:  # ReLU and requantization in the fc1 GEMM's epilogue: uint8 out
            assert PACKED_FUNC in calls[j].func and calls[j].args[-1][1] == "uint8"
            assert "fc2" in calls[j + 1].func
        else:  # TVM's default GEMM, then one uint8 requantization straight into fc2
            assert calls[j + 1].func.startswith("rq") and calls[j + 1].args[-1][1] == "uint8"
            assert "fc2" in calls[j + 2].func
    x = np.random.default_rng(1).integers(-128, 128, (2, 1, 32, 32), dtype=np.int8)
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    np.testing.assert_array_equal(
        vm["main"](tvm.runtime.tensor(x)).numpy(), reference_forward(model, x)
    )


def _blocks(model):
    plan = model.plan
    if model.family == "swin":
        return [bp for sp in plan.stages for bp in sp.blocks]
    return plan.blocks


def test_relu_distill_command(tmp_path):
    """The command as a user runs it: a short run, its checkpoint and report, then quantize."""
    ckpt = tmp_path / "teacher.pt"
    torch.save(_teacher().state_dict(), ckpt)
    out = tmp_path / "gelu_less.pt"
    cmd = [sys.executable, "-m", "intvit.cli", "relu-distill", "digits_vit"]
    args = ["--checkpoint", str(ckpt), "--train-limit", "32", "--lr", "1e-3", "-o", str(out)]
    run = subprocess.run([*cmd, *args, "--quiet"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "GELU-less, block by block + KD" in run.stdout
    report = json.loads((tmp_path / "gelu_less.pt.json").read_text())
    assert [r["int_variant"] for r in report["results"]] == ["lut", "relu"]
    assert report["test_images"] == 500
    quant = [sys.executable, "-m", "intvit.cli", "quantize", "digits_vit", "--quiet"]
    q = subprocess.run(
        [*quant, "--checkpoint", str(out), "-o", str(tmp_path / "m.safetensors")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert q.returncode == 0, q.stderr
    assert "gelu=relu" in q.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("name", "tolerance"), [("digits_vit", 0.005), ("digits_swin", 0.015)])
def test_gelu_less_integer_model_keeps_the_float_gelu_accuracy(name, tolerance, tmp_path):
    """The acceptance figures on the trained digits models (lr 1e-3, 2 epochs per block):
    the GELU-less integer-only model within ``tolerance`` of the float GELU model's top-1,
    and swapping every block at once without distillation clearly worse: far from the
    original's outputs (KL several times the distilled one's) and, for Swin, at least 2.5
    points (12 of the 500 test images) lower.

    Swin's bound is 1.5 points, not ViT's 0.5: the float models are retrained on each host,
    and a Swin retrained on an AVX-512 host with the older 40-epoch recipe (float 94.6%)
    distilled to 93.4%. With the 200-epoch recipe (float 98.2% on Zen 5) the swap without
    distillation costs 4.0 points (94.2%), the older model's over 5. 500 test images: one
    image is 0.2 points."""
    from intvit.api.eval import float_logits
    from intvit.api.quantize import ModelSpec
    from intvit.api.relu_distill import _accuracy

    spec = ModelSpec(name)
    teacher = spec.load_float(progress=False)
    calib, test = spec.split("calib", 32), spec.split("test", 32)
    cfg = DistillConfig(epochs_per_block=2, lr=1e-3)
    train = ArrayImages(digits("train").images)
    student = relu_distill(teacher, train, cfg, tmp_path / "s.pt", name, progress=False)
    reference = float_logits(teacher, test)
    original = _accuracy("original", teacher, reference, spec, calib, test)
    distilled = _accuracy("gelu-less", student, reference, spec, calib, test)
    no_kd = _accuracy("no kd", swap_all(teacher), reference, spec, calib, test)
    assert distilled.int_variant == "relu"
    assert distilled.int_top1 >= original.float_top1 - tolerance, (distilled, original)
    assert no_kd.kl_to_original > 3 * distilled.kl_to_original, (no_kd, distilled)
    assert no_kd.agreement_with_original < distilled.agreement_with_original
    if name == "digits_swin":
        assert no_kd.int_top1 < original.float_top1 - 0.025, (no_kd, original)


def _exact_requantize(acc: int, rq: RequantParams, channel: int = 0) -> int:
    """The dyadic requantization in unbounded Python integers (no wrap can happen)."""
    m, s = rq.m[channel], rq.s[channel]
    x = (acc + (1 << (rq.p - 1) if rq.p else 0)) >> rq.p
    y = (x * m + (1 << (s - 1) if s else 0)) >> s
    lo, hi = rq.out_range
    return min(max(y, lo), hi)


@pytest.mark.parametrize("ratio", [2.0**-20, 3.1e-6, 1.7e-5])
def test_uint8_fc2_accumulator_fits_a_32_bit_product(ratio):
    """GELU-less fc2 at the extremes: K = 3072 uint8 activations of 255 times weights of
    +-127 (the largest accumulator, 25+ bits). Sized with ``a_max=255``, the 32-bit-product
    requantization equals the exact integer one on every extreme; sized as if int8 (128),
    the bound is one bit short."""
    from intvit.quant.plan_common import acc_bits

    k = 3072
    bound = k * 255 * 127
    assert acc_bits(k, 128) < bound.bit_length() == acc_bits(k, 255)
    rq = RequantParams.make(ratio, acc_bits(k, 255), "int32", product_bits=32)
    extremes = np.array([bound, -bound, bound - 1, -(bound - 1), 1 << 26, 0], dtype=np.int64)
    rng = np.random.default_rng(3072)
    accs = np.concatenate([extremes, rng.integers(-bound, bound + 1, 200)]).astype(np.int32)
    got = requantize_ref(accs, rq)
    want = [_exact_requantize(int(a), rq) for a in accs]
    np.testing.assert_array_equal(got, np.array(want, dtype=np.int64))


def test_gelu_less_plan_sizes_fc2_for_uint8_inputs():
    """The plan of a GELU-less model sizes fc2's requantization for its uint8 input."""
    from intvit.quant.plan_common import acc_bits

    model = swap_all(_teacher())
    m = calibrate(model, digits("calib").images[:8], QuantConfig(gelu="relu"))
    hidden = m.arch.blocks[0].mlp_hidden
    assert m.plan.blocks[0].rq_fc2.in_bits == acc_bits(hidden, 255)
