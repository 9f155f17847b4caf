"""Ctrl-C in the middle of the long-running commands (quantize, compile, nas search; tune,
bench and the services have theirs beside their other tests): each ends within seconds with
exit status 130, says it was interrupted, prints no traceback, leaves no process behind and
nothing partial under its output's name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: Seconds from the signal to the command's exit that count as "at once".
PROMPT_S = 15


def interrupt_when(argv: list[str], ready, marker, timeout: float = 300) -> tuple[int, str, float]:
    """Start ``intvit argv``, send SIGINT once ``ready(output so far)`` holds, and return the
    exit status, its stdout and stderr together and the seconds from the signal to the exit."""
    job = subprocess.Popen(
        [sys.executable, "-m", "intvit.cli", *argv],
        # both streams in one pipe, unbuffered: ``ready`` may wait for a progress line
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**marker.env, "PYTHONUNBUFFERED": "1"},
        # a test run started in the background inherits SIGINT ignored: the job as a user's
        # shell starts it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.set_blocking(job.stdout.fileno(), False)
    err = b""
    try:
        deadline = time.monotonic() + timeout
        while not ready(err.decode(errors="replace")):
            assert job.poll() is None, f"finished before the signal: {err[-2000:]!r}"
            assert time.monotonic() < deadline, "never got to the point to interrupt"
            err += job.stdout.read() or b""
            time.sleep(0.05)
        job.send_signal(signal.SIGINT)
        sent = time.monotonic()
        while job.poll() is None and time.monotonic() - sent < 120:
            err += job.stdout.read() or b""
            time.sleep(0.05)
        took = time.monotonic() - sent
        err += job.stdout.read() or b""
    finally:
        if job.poll() is None:
            job.kill()
    return job.returncode, err.decode(errors="replace"), took


def check_interrupted(code: int, err: str, took: float, marker) -> None:
    assert code == 130, err[-2000:]
    assert took < PROMPT_S, f"{took:.0f} s from Ctrl-C to the exit"
    assert "Traceback" not in err, err[-2000:]
    assert "intvit: interrupted" in err, err[-2000:]
    time.sleep(1)
    assert not marker.alive(), "processes of the command are left"


def no_partial_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if ".tmp" in p.name]
    assert not leftovers, leftovers


def test_ctrl_c_in_quantize(tmp_path, job_marker):
    import torch

    from intvit.models.zoo import create_float_model

    weights = tmp_path / "swin.pt"  # random weights: no zoo training in this test
    torch.save(create_float_model("digits_swin").state_dict(), weights)
    out = tmp_path / "m.safetensors"
    argv = ["quantize", "digits_swin", "--checkpoint", str(weights), "-o", str(out)]
    code, err, took = interrupt_when(argv, lambda e: "calibrate" in e, job_marker)
    check_interrupted(code, err, took, job_marker)
    assert not out.exists()
    no_partial_files(tmp_path)


def test_ctrl_c_in_compile(tmp_path, job_marker):
    from intvit.models.datasets import digits
    from intvit.models.zoo import create_float_model
    from intvit.quant.artifact import save_int_model
    from intvit.quant.calibrate import calibrate

    artifact = save_int_model(
        calibrate(create_float_model("digits_vit"), digits("calib").images[:8]),
        tmp_path / "m.safetensors",
    )
    out = tmp_path / "m.so"
    seen: list[float] = []

    def mid_compile(err: str) -> bool:
        """One second after the command says it is compiling: the lowering and code generation
        after that line take 4-40 s, depending on the host."""
        if "compiling" not in err:
            return False
        seen.append(time.monotonic())
        return time.monotonic() - seen[0] > 1

    code, err, took = interrupt_when(
        ["compile", str(artifact), "-o", str(out)], mid_compile, job_marker
    )
    check_interrupted(code, err, took, job_marker)
    assert not out.exists() and not Path(str(out) + ".json").exists()
    no_partial_files(tmp_path)


def test_ctrl_c_in_nas_search_keeps_its_state(tmp_path, job_marker):
    from intvit.cli import main

    supernet = tmp_path / "s.pt"
    argv = ["nas", "train-supernet", "--space", "digits", "--epochs", "1", "-o", str(supernet)]
    assert main([*argv, "--quiet"]) == 0
    out = tmp_path / "search"
    argv = ["nas", "search", str(supernet), "--out", str(out), "--max-params", "60000"]
    argv += ["--population", "20", "--generations", "50"]
    state = out / "state.json"

    def searching(_: str) -> bool:
        return state.is_file()

    code, err, took = interrupt_when(argv, searching, job_marker)
    check_interrupted(code, err, took, job_marker)
    assert "the search state is in" in err
    body = json.loads(state.read_text())  # whole: written atomically
    assert body["history"]
    no_partial_files(out)
