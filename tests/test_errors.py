"""Bad input raises ValueError naming the parameter and the allowed range."""

from __future__ import annotations

import pytest
from tvm import te

from intvit.deploy.targets import get_preset
from intvit.topi.registry import get_variant
from intvit.topi.requantize_params import RequantParams
from intvit.topi.sqrt import isqrt


def test_unknown_variant_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown softmax variant 'fast'.*edge.*ibert.*shiftmax"):
        get_variant("softmax", "fast")


def test_wrong_input_dtype():
    v = get_variant("softmax", "edge")
    q = te.placeholder((2, 7), "float32", name="q")
    with pytest.raises(ValueError, match=r"q\.dtype='float32' is not supported"):
        v.compute(q, v.make_params(0.1, 7))


def test_wrong_rank_and_axis():
    v = get_variant("softmax", "edge")
    with pytest.raises(ValueError, match="rank 5"):
        v.compute(te.placeholder((1, 1, 1, 1, 7), "int8"), v.make_params(0.1, 7))
    with pytest.raises(ValueError, match="axis=0 is not supported"):
        v.compute(te.placeholder((3, 7), "int8"), v.make_params(0.1, 7), axis=0)


def test_bit_width_out_of_range():
    with pytest.raises(ValueError, match=r"out_bits=1 is out of range; allowed \[2, 16\]"):
        get_variant("softmax", "shiftmax").make_params(0.1, 7, out_bits=1)
    with pytest.raises(ValueError, match=r"m_star=3 is out of range; allowed \[8, 22\]"):
        get_variant("softmax", "edge").make_params(0.1, 197, m_star=3)


def test_scale_that_overflows_a_constant():
    with pytest.raises(ValueError, match=r"c_int=.*does not fit int32"):
        get_variant("softmax", "ibert").make_params(1e-6, 7)
    with pytest.raises(ValueError, match=r"scale=0\.0 is out of range"):
        get_variant("gelu", "edge").make_params(0.0, 0.1)


def test_layernorm_channel_mismatch_and_range():
    v = get_variant("layernorm", "edge")
    with pytest.raises(ValueError, match="q has 8 channels, params expect 7"):
        v.compute(te.placeholder((2, 8), "int32"), v.make_params(7))
    with pytest.raises(ValueError, match=r"in_bits=31 is out of range; allowed \[0, 30\]"):
        v.make_params(768, in_bits=31)


def test_requantize_rejects_bad_product_and_ratio():
    with pytest.raises(ValueError, match="product_bits=16 is not supported"):
        RequantParams.make(0.5, 7, product_bits=16)
    with pytest.raises(ValueError, match="needs more than m_bits"):
        RequantParams.make(2.0**40, 7)


def test_isqrt_fixed_needs_iters_and_unknown_target():
    with pytest.raises(ValueError, match="needs iters"):
        isqrt(te.placeholder((4,), "int32"), "newton_fixed")
    with pytest.raises(ValueError, match="target preset='pi9' is not supported"):
        get_preset("pi9")


def _manifest_dict() -> dict:
    from dataclasses import asdict

    from intvit.deploy.manifest import LibraryManifest

    m = LibraryManifest("host", {"kind": "llvm"}, "x86_64", (1, 1, 32, 32), "int8", "int", "m")
    return asdict(m)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: [d], "holds a JSON list, not an object"),
        (lambda d: {**d, "input_dtype": "U"}, "input_dtype 'U' is not one of"),
        (lambda d: {**d, "version": "abc"}, "version 'abc' is not an integer"),
        (lambda d: {**d, "input_shape": [1, 0, 32]}, "input_shape [1, 0, 32] must be positive"),
        (lambda d: {**d, "kind": "int4"}, "kind 'int4' is not one of"),
    ],
)
def test_bad_manifests_are_named(tmp_path, edit, message):
    """A hand-edited manifest fails on reading, naming the file and the field, before any
    upload (the device would say only 'RPCError: Error caught from RPC call:')."""
    import json

    from intvit.deploy.manifest import manifest_path, read_manifest

    lib = tmp_path / "m.so"
    manifest_path(lib).write_text(json.dumps(edit(_manifest_dict())))
    with pytest.raises(ValueError, match=r"m\.so\.json") as exc:
        read_manifest(lib)
    assert message in str(exc.value)
    manifest_path(lib).write_text(json.dumps(_manifest_dict()))
    assert read_manifest(lib).input_dtype == "int8"


def test_a_device_that_went_away_is_said_so():
    """TVM reports a server that shut down mid-call as a generic error whose text holds
    ``kShutdown``; the bench says the device went away instead."""
    from intvit.deploy.bench import DeviceError, call_with_timeout

    def shut_down():
        raise RuntimeError("Check failed: (code == RPCCode::kReturn) is false: code=kShutdown")

    with pytest.raises(DeviceError, match=r"device 'x' running failed: the device went away"):
        call_with_timeout(shut_down, 5, "device 'x' running")
    with pytest.raises(DeviceError, match=r"failed: some other error$"):
        call_with_timeout(lambda: (_ for _ in ()).throw(RuntimeError("some other error")), 5, "y")
