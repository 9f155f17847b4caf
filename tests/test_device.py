"""The emulated aarch64 device over a real tracker: compiled models bit-exact there.

Marked ``device``; ``.ci/run`` runs it (it sets the device up itself: needs root, apt, PyPI).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from intvit.deploy.compile import compile_model, export
from intvit.deploy.emulator import EmulatorError, default_root, start_emulated_server
from intvit.deploy.rpc import connect_tracker, run_remote, start_tracker, wait_for_device
from intvit.models.data import digits
from intvit.models.zoo import create_float_model
from intvit.quant.calibrate import calibrate
from intvit.quant.config import QuantConfig
from intvit.quant.reference import quantize_input, reference_forward

pytestmark = [pytest.mark.device, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def arm_device(tmp_path_factory):
    logs = tmp_path_factory.mktemp("rpc")
    with start_tracker(log_dir=logs) as tracker:
        try:
            a76 = start_emulated_server(tracker.port, "emu-a76", default_root())
            a72 = start_emulated_server(tracker.port, "emu-a72", default_root(), cpu="cortex-a72")
        except EmulatorError as err:
            pytest.fail(f"the emulated ARM device could not start: {err}")
        with a76, a72:
            session = connect_tracker("127.0.0.1", tracker.port)
            wait_for_device(session, "emu-a76", 120)
            wait_for_device(session, "emu-a72", 120)
            yield session


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("digits_vit", QuantConfig()),
        ("digits_deit", QuantConfig()),
        ("digits_swin", QuantConfig()),
        ("digits_vit", QuantConfig(softmax="shiftmax", gelu="shiftgelu", layernorm="ilayernorm")),
    ],
    ids=["vit", "deit", "swin", "vit-ivit"],
)
@pytest.mark.parametrize("preset", ["aarch64-linux", "aarch64-dotprod"])
def test_model_bit_exact_on_emulated_arm(name, config, preset, arm_device, tmp_path):
    torch.manual_seed(2)
    model = calibrate(create_float_model(name), digits("calib").images[:24], config)
    lib = export(compile_model(model, preset, batch=2), preset, tmp_path / f"{name}.so")
    q = quantize_input(model, digits("test").images[:2])
    result = run_remote(arm_device, "emu-a76", lib, q)
    np.testing.assert_array_equal(result.outputs, reference_forward(model, q))


def test_rpi4_preset_runs_on_a_cortex_a72(arm_device, tmp_path):
    """The rpi4 preset uses only the A72's features: it runs where dotprod does not exist."""
    torch.manual_seed(3)
    model = calibrate(create_float_model("digits_vit"), digits("calib").images[:24])
    lib = export(compile_model(model, "rpi4"), "rpi4", tmp_path / "rpi4.so")
    q = quantize_input(model, digits("test").images[:1])
    result = run_remote(arm_device, "emu-a72", lib, q)
    np.testing.assert_array_equal(result.outputs, reference_forward(model, q))


def test_unreachable_tracker_is_a_clear_error():
    from intvit.deploy.rpc import free_port

    with pytest.raises(ValueError, match=r"cannot reach the RPC tracker at 127\.0\.0\.1:"):
        connect_tracker("127.0.0.1", free_port())
