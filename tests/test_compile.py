"""Relax lowering: compiled models equal the reference forward bit for bit; export and load."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

from intvit.deploy.compile import compile_model, export
from intvit.deploy.runner import load, run
from intvit.models.datasets import digits
from intvit.models.zoo import create_float_model
from intvit.quant.calibrate import calibrate
from intvit.quant.config import QuantConfig
from intvit.quant.reference import quantize_input, reference_forward

CONFIGS = {
    "edge": QuantConfig(),
    "ivit": QuantConfig(softmax="shiftmax", gelu="shiftgelu", layernorm="ilayernorm"),
    "ibert": QuantConfig(softmax="ibert", gelu="ibert", layernorm="ilayernorm"),
}


@pytest.fixture(scope="module")
def int_models():
    torch.manual_seed(1)
    calib = digits("calib").images[:24]
    return {
        (name, cfg): calibrate(create_float_model(name), calib, CONFIGS[cfg])
        for name in ("digits_vit", "digits_deit", "digits_swin")
        for cfg in CONFIGS
    }


@pytest.mark.parametrize("cfg", list(CONFIGS))
@pytest.mark.parametrize("name", ["digits_vit", "digits_deit", "digits_swin"])
def test_host_build_is_bit_exact(name, cfg, int_models):
    model = int_models[(name, cfg)]
    vm = relax.VirtualMachine(compile_model(model, "host", batch=3), tvm.cpu())
    images = digits("test").images
    for start in (0, 3):
        q = quantize_input(model, images[start : start + 3])
        np.testing.assert_array_equal(run(vm, q), reference_forward(model, q))
    extreme = np.stack([np.full(q.shape[1:], v, np.int8) for v in (-128, 127, 0)])
    np.testing.assert_array_equal(run(vm, extreme), reference_forward(model, extreme))


def test_exported_library_runs_with_only_tvm_and_numpy(int_models, tmp_path):
    model = int_models[("digits_deit", "edge")]
    lib = export(compile_model(model, "host", batch=2), "host", tmp_path / "deit.so")
    q = quantize_input(model, digits("test").images[:2])
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "want.npy", reference_forward(model, q))
    # A user's deployment script: tvm and numpy only, with torch and timm made unimportable.
    script = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "timm", "intvit"):
            raise ImportError(f"{{name}} is blocked in this deployment test")
sys.meta_path.insert(0, Block())
import json
import numpy as np
import tvm
vm = tvm.relax.VirtualMachine(tvm.runtime.load_module({str(lib)!r}), tvm.cpu())
got = vm["main"](tvm.runtime.tensor(np.load({str(tmp_path / "q.npy")!r}))).numpy()
heavy = sorted(m for m in ("torch", "timm", "intvit") if m in sys.modules)
print(json.dumps({{"equal": bool(np.array_equal(got, np.load({str(tmp_path / "want.npy")!r}))),
                   "heavy": heavy}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"equal": True, "heavy": []}


@pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-g++") is None,
    reason="needs g++-aarch64-linux-gnu (make test installs it)",
)
def test_aarch64_library_is_refused_on_x86(int_models, tmp_path):
    model = int_models[("digits_vit", "edge")]
    lib = export(compile_model(model, "aarch64-dotprod"), "aarch64-dotprod", tmp_path / "a.so")
    header = lib.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # aarch64
    with pytest.raises(ValueError, match=r"a\.so' is built for aarch64; this machine is x86_64"):
        load(str(lib))
    broken = tmp_path / "broken.so"
    # an ELF header that says x86_64, and nothing a loader can use after it
    broken.write_bytes(lib.read_bytes()[:18] + (62).to_bytes(2, "little") + b"\0" * 64)
    with pytest.raises(ValueError, match=r"cannot load .*broken\.so' as a TVM library"):
        load(str(broken))


def test_apple_target_exports_an_archive(int_models, tmp_path):
    model = int_models[("digits_vit", "edge")]
    path = export(compile_model(model, "apple-m1"), "apple-m1", tmp_path / "m1.so")
    assert path.suffix == ".tar" and path.stat().st_size > 0


def test_bad_inputs(int_models):
    model = int_models[("digits_vit", "edge")]
    with pytest.raises(ValueError, match="target preset='pi9' is not supported"):
        compile_model(model, "pi9")
    with pytest.raises(ValueError, match="batch=0"):
        compile_model(model, "host", batch=0)
    vm = relax.VirtualMachine(compile_model(model, "host"), tvm.cpu())
    with pytest.raises(ValueError, match="must be int8"):
        run(vm, np.zeros((1, 1, 32, 32), np.float32))


def test_kernels_are_routed_by_their_kind_attribute(int_models):
    """Every kernel intvit emits carries its kind; the schedules route on it, not on names:
    a row kernel renamed is still row-scheduled, a function merely named like one is not."""
    from tvm import tirx

    from intvit.relax_ops.graph import build_module
    from intvit.schedules.model import schedule_rows
    from intvit.topi.kinds import KERNEL_ATTR, KINDS, kernel_kind

    mod = build_module(int_models[("digits_swin", "edge")], 1)
    funcs = {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tirx.PrimFunc)}
    kinds = {name: kernel_kind(f) for name, f in funcs.items()}
    assert all(k in KINDS for k in kinds.values()), kinds
    assert {"softmax", "gelu", "layernorm", "scores", "data"} <= set(kinds.values())
    gelu = next(f for n, f in funcs.items() if kinds[n] == "gelu")
    impostor = next(f for n, f in funcs.items() if kinds[n] == "data").without_attr(KERNEL_ATTR)
    probe = tvm.IRModule({"renamed_kernel": gelu, "softmax_lookalike": impostor})
    scheduled = schedule_rows(probe, cores=2)
    assert scheduled["renamed_kernel"].attrs.get("tirx.is_scheduled", False)
    assert not scheduled["softmax_lookalike"].attrs.get("tirx.is_scheduled", False)


def test_fp32_baseline_gathers_in_clip_mode():
    """The FP32 baseline's token/position gathers are ``clip`` takes, so TVM prints no "Fast
    mode segfaults" warning to the user."""
    from intvit.deploy.compile import float_module

    model = create_float_model("digits_vit").eval()
    text = float_module(model, (1, 1, 32, 32)).script()
    assert 'mode="fast"' not in text and 'mode="clip"' in text
    cmd = [
        sys.executable,
        "-c",
        "from intvit.models.zoo import create_float_model\n"
        "from intvit.deploy.compile import compile_float_model\n"
        "compile_float_model(create_float_model('digits_vit').eval(), (1, 1, 32, 32), 'host', 'x')",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Fast mode" not in done.stderr + done.stdout
