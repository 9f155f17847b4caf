"""The command line as a user runs it (in-process, argv in, exit code and output out)."""

from __future__ import annotations

import numpy as np
import pytest

from intvit.cli import main
from intvit.deploy.runner import load, run
from intvit.models.datasets import digits
from intvit.quant.artifact import load_int_model
from intvit.quant.reference import quantize_input, reference_forward


def test_kernels_and_targets_list(capsys):
    assert main(["kernels"]) == 0
    assert "edge" in capsys.readouterr().out
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "rpi4" in out and "apple-m1" in out
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert "arm-smmla" in rows["graviton3"] and "arm-neon" in rows["rpi4"]


@pytest.mark.slow
@pytest.mark.parametrize("weight_bits", ["8", "7"])
def test_quantize_compile_run(tmp_path, capsys, weight_bits):
    art = tmp_path / "vit.safetensors"
    args = ["quantize", "digits_vit", "-o", str(art), "--quiet", "--weight-bits", weight_bits]
    assert main(args) == 0
    lib = tmp_path / "vit.so"
    assert main(["compile", str(art), "--target", "host", "-o", str(lib)]) == 0
    model = load_int_model(art)
    assert model.config.weight_bits == int(weight_bits)  # kept in the artifact
    widest = max(
        int(np.abs(v.astype(np.int16)).max()) for k, v in model.tensors.items() if k.endswith(".w")
    )
    assert widest == 2 ** (int(weight_bits) - 1) - 1
    q = quantize_input(model, digits("test").images[:1])
    np.testing.assert_array_equal(run(load(str(lib)), q), reference_forward(model, q))


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["compile", str(tmp_path / "missing.safetensors"), "-o", "x.so"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", "resnet50", "--quiet"]) == 2
    assert "unsupported model 'resnet50'" in capsys.readouterr().err
    assert main(["device", "list", "--tracker", "127.0.0.1:1"]) == 2
    assert "cannot reach the RPC tracker" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["tune", "m.safetensors", "--trials", "-5"], "--trials"),
        (["tune", "m.safetensors", "--trials", "0"], "--trials"),
        (["bench", "m.safetensors", "--number", "0"], "--number"),
        (["bench", "m.safetensors", "--repeat", "0"], "--repeat"),
        (["bench", "m.safetensors", "--warmup", "-1"], "--warmup"),
        (["eval", "digits_vit", "--calib", "0"], "--calib"),
        (["compile", "m.safetensors", "--batch", "0"], "--batch"),
        (["tune", "m.safetensors", "--trials", "many"], "--trials"),
    ],
)
def test_counts_below_one_are_refused_before_any_work(argv, flag, capsys):
    """A count below its minimum is a one-line usage error (exit 2), not an empty run or a
    median of nothing."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert flag in err and ("must be >=" in err or "not an integer" in err), err


def test_unwritable_outputs_are_refused_before_the_work(tmp_path, capsys):
    """``-o`` under a file, or onto a folder: a one-line error before calibration or
    compilation starts (nothing computed is lost to a bad path)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["quantize", "digits_vit", "-o", str(blocker / "m.safetensors"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{str(blocker)!r} is a file" in err and "calibrat" not in err
    assert main(["quantize", "digits_vit", "-o", str(tmp_path), "--quiet"]) == 2
    assert "it is a folder" in capsys.readouterr().err


def test_check_writable_and_atomic_output(tmp_path):
    import os

    from intvit.paths import atomic_output, check_writable

    assert check_writable(tmp_path / "a" / "b" / "m.so") == tmp_path / "a" / "b" / "m.so"
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the work failed")
    assert not target.exists() and os.listdir(tmp_path) == ["a"]
    with atomic_output(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        with pytest.raises(ValueError, match="Permission denied"):
            check_writable(ro / "m.so")


def test_demo_headline_names_the_strongest_peer():
    """The demo's speed-up is over the fastest baseline measured; TVM FP32 is named as
    untuned, never the headline while a real peer was measured."""
    from intvit.api.demo import headline, strongest_peer

    ratios = {"TVM FP32": 7.94, "PyTorch eager FP32": 3.1, "ONNX Runtime FP32": 1.29}
    assert strongest_peer(ratios) == "ONNX Runtime FP32"
    line = headline(ratios)
    assert line.startswith("integer-only is 1.29x the speed of ONNX Runtime FP32, the fastest")
    assert "7.94x TVM FP32 (an untuned build" in line
    assert "untuned" in headline({"TVM FP32": 7.94}) and headline({}) == ""
