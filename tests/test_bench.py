"""``intvit bench`` against a real tracker and a real RPC server on 127.0.0.1: reports, the
per-operator profile, a server killed mid-run, concurrent jobs, wrong-architecture libraries."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time

import pytest
import torch
from PIL import Image

from intvit.api.bench import BenchRequest, run_bench
from intvit.cli import main
from intvit.deploy import rpc
from intvit.deploy.archcheck import library_arch
from intvit.deploy.bench import BenchConfig, DeviceError, categorize
from intvit.deploy.compile import compile_int_model, export
from intvit.deploy.manifest import manifest_path, read_manifest
from intvit.models.datasets import digits
from intvit.models.zoo import create_float_model
from intvit.quant.artifact import save_int_model
from intvit.quant.calibrate import calibrate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

FAST = BenchConfig(warmup=1, number=3, repeat=5, profile_repeat=2, step_timeout_s=120)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    torch.manual_seed(5)
    model = calibrate(create_float_model("digits_vit"), digits("calib").images[:24])
    return save_int_model(model, tmp_path_factory.mktemp("art") / "vit.int.safetensors")


@pytest.fixture(scope="module")
def library(artifact, tmp_path_factory):
    from intvit.quant.artifact import load_int_model

    compiled = compile_int_model(load_int_model(artifact), "host", profile=True)
    return export(compiled, "host", tmp_path_factory.mktemp("lib") / "vit.so")


@pytest.fixture(scope="module")
def tracker_port(tmp_path_factory):
    logs = tmp_path_factory.mktemp("rpc")
    with rpc.start_tracker(log_dir=logs) as tracker:
        with rpc.start_host_server(tracker.port, "local", log_dir=logs):
            rpc.wait_for_device(rpc.connect_tracker("127.0.0.1", tracker.port), "local", 60)
            yield tracker.port


def test_bench_on_local_device_compare_and_per_op(artifact, tracker_port, tmp_path):
    request = BenchRequest(
        artifact,
        f"127.0.0.1:{tracker_port}",
        "local",
        compare=True,
        per_op=True,
        float_model="digits_vit",
        out=tmp_path,
        config=FAST,
        progress=False,
    )
    report, paths = run_bench(request)
    data = json.loads(paths["json"].read_text())
    assert data["status"] == "complete" and data["error"] is None
    assert data["preset"] == "host" and data["emulated"] is False
    assert data["device_info"]["bit_exact"] is True
    labels = [lat["label"] for lat in data["latencies"]]
    assert labels == [
        "intvit integer-only",
        "TVM FP32",
        "PyTorch eager FP32",
        "ONNX Runtime FP32",
        "OpenVINO FP32",
        "OpenVINO int8 (NNCF)",
    ]
    for lat in data["latencies"]:
        assert len(lat["samples_ms"]) == FAST.repeat
        assert 0 < lat["p10_ms"] <= lat["median_ms"] <= lat["p90_ms"]
    assert set(data["speedup_vs"]) == set(labels[1:])
    # The per-op profile covers the model: every kernel of main's calls timed, none twice.
    profile = data["per_op"]["intvit integer-only"]
    assert all(k["total_ms"] > 0 for k in profile["kernels"]), profile["kernels"]
    funcs = [k["func"] for k in profile["kernels"]]
    manifest_calls = read_manifest(report.libraries["integer"]).calls
    assert len(funcs) == len(set(funcs)) and set(funcs) == {c.func for c in manifest_calls}
    # requantization and residual adds run in the GEMMs' epilogues: no kernels of their own
    assert {"gemm", "softmax", "gelu", "layernorm"} <= set(profile["by_category_ms"])
    calls = sum(k["calls"] for k in profile["kernels"])
    assert calls == len(read_manifest(report.libraries["integer"]).calls)
    assert "TVM FP32" in data["per_op"]
    with Image.open(paths["png"]) as png:
        png.verify()
        assert png.format == "PNG" and png.size[0] > 400 and png.size[1] > 200
    markdown = paths["markdown"].read_text()
    assert "| intvit integer-only | rpc:local |" in markdown and "## Per-operator" in markdown


def test_server_killed_mid_run_keeps_partial_results(artifact, tmp_path):
    """The server dies after the integer model was timed: a clear error within the timeout,
    and the report on disk keeps that measurement."""
    with rpc.start_tracker(log_dir=tmp_path) as tracker:
        server = rpc.start_host_server(tracker.port, "doomed", log_dir=tmp_path)
        rpc.wait_for_device(rpc.connect_tracker("127.0.0.1", tracker.port), "doomed", 60)
        out = tmp_path / "bench"
        request = BenchRequest(
            artifact,
            f"127.0.0.1:{tracker.port}",
            "doomed",
            compare=True,
            float_model="digits_vit",
            out=out,
            config=BenchConfig(warmup=1, number=2, repeat=3, step_timeout_s=60),
            progress=False,
        )
        box = {}

        def job():
            try:
                box["result"] = run_bench(request)
            except Exception as err:
                box["error"] = err

        thread = threading.Thread(target=job)
        thread.start()
        report_json = out / "bench-vit-doomed.json"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if report_json.exists() and json.loads(report_json.read_text())["latencies"]:
                break
            time.sleep(0.05)
        server.stop()
        thread.join(timeout=180)
    assert not thread.is_alive()
    assert isinstance(box.get("error"), DeviceError), box
    assert "'doomed'" in str(box["error"]) and "results so far in" in str(box["error"])
    data = json.loads(report_json.read_text())
    assert data["status"] == "partial" and "doomed" in data["error"]
    assert data["latencies"][0]["label"] == "intvit integer-only"
    assert len(data["latencies"][0]["samples_ms"]) == 3


def test_three_concurrent_jobs_on_one_device_all_finish(library, tracker_port, tmp_path):
    cmd = [sys.executable, "-m", "intvit.cli", "bench", str(library), "--quiet"]
    cmd += ["--tracker", f"127.0.0.1:{tracker_port}", "--key", "local"]
    cmd += ["--repeat", "3", "--number", "20", "--per-op"]
    jobs = [
        subprocess.Popen(
            [*cmd, "--out", str(tmp_path / f"job{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(3)
    ]
    outputs = [job.communicate(timeout=300)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0, 0], outputs
    for i in range(3):
        data = json.loads((tmp_path / f"job{i}" / "bench-vit-local.json").read_text())
        assert data["status"] == "complete" and data["per_op"]


def test_cli_bench_and_device_list(artifact, tracker_port, tmp_path, capsys):
    assert main(["device", "list", "--tracker", f"127.0.0.1:{tracker_port}"]) == 0
    assert "local" in capsys.readouterr().out
    args = ["bench", str(artifact), "--tracker", f"127.0.0.1:{tracker_port}", "--quiet"]
    args += ["--repeat", "3", "--number", "2", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "golden vectors: 4/4 bit-exact on the device" in out
    assert "intvit integer-only" in out and "reports:" in out


def test_library_golden_vectors_on_the_device_and_here(library, tracker_port, tmp_path, capsys):
    """The manifest's golden vectors (the reference forward's exact outputs) are checked on
    the device before ``intvit bench lib.so`` times it, and by ``verify_library`` with the
    TVM runtime alone; an edited expected output is reported, with exit status 1."""
    from intvit.deploy.golden import GOLDEN_INPUTS
    from intvit.deploy.verify import verify_library

    manifest = read_manifest(library)
    assert [g.input for g in manifest.golden] == list(GOLDEN_INPUTS)
    assert manifest.family == "vit"
    assert verify_library(library) == [True] * len(GOLDEN_INPUTS)
    args = ["bench", str(library), "--tracker", f"127.0.0.1:{tracker_port}", "--quiet"]
    args += ["--repeat", "2", "--number", "2"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "golden vectors: 4/4 bit-exact on the device" in capsys.readouterr().out
    lied = tmp_path / "lied.so"
    shutil.copy(library, lied)
    data = json.loads(manifest_path(library).read_text())
    data["golden"][2]["output"][0] += 1
    manifest_path(lied).write_text(json.dumps(data))
    assert verify_library(lied) == [True, True, False, True]
    assert main([*args[:1], str(lied), *args[2:], "--out", str(tmp_path / "b")]) == 1
    expected = "golden vectors: 3/4 bit-exact on the device (random:1 exact, random:2 exact, "
    assert expected + "fill:-128 DIFFERS" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None, reason="no cross compiler")
def test_library_for_another_architecture_is_refused_before_upload(
    artifact, tracker_port, tmp_path
):
    from intvit.quant.artifact import load_int_model

    lib = export(
        compile_int_model(load_int_model(artifact), "aarch64-linux"),
        "aarch64-linux",
        tmp_path / "arm.so",
    )
    assert library_arch(lib) == "aarch64"
    request = BenchRequest(
        lib, f"127.0.0.1:{tracker_port}", "local", out=tmp_path, config=FAST, progress=False
    )
    with pytest.raises(ValueError, match=r"built for aarch64, but device 'local' is x86_64"):
        run_bench(request)


def test_bad_inputs_are_named(library, tmp_path, tracker_port):
    broken = tmp_path / "broken.so"
    broken.write_bytes(b"not a library")
    with pytest.raises(ValueError, match="no ELF or Mach-O header"):
        library_arch(broken)
    no_manifest = tmp_path / "copy.so"
    shutil.copy(library, no_manifest)
    with pytest.raises(ValueError, match="has no manifest"):
        read_manifest(no_manifest)
    manifest_path(no_manifest).write_text("{")
    with pytest.raises(ValueError, match="is corrupt"):
        read_manifest(no_manifest)
    request = BenchRequest(library, "127.0.0.1:1", "local", out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="cannot reach the RPC tracker"):
        run_bench(request)
    # A key no server registered: a named error within seconds, not a 900 s queue wait.
    quick = BenchConfig(warmup=1, number=1, repeat=1, registration_timeout_s=1.0)
    request = BenchRequest(
        library, f"127.0.0.1:{tracker_port}", "nobody", out=tmp_path, config=quick, progress=False
    )
    start = time.monotonic()
    with pytest.raises(DeviceError, match=r"no server for key 'nobody' .*registered: local"):
        run_bench(request)
    assert time.monotonic() - start < 30


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input_shape", [2, 1, 32, 32], r"batch 2, the library takes batch 1"),
        (
            "input_shape",
            [1, 3, 32, 32],
            r"input_shape \[1, 3, 32, 32\], the library takes \[1, 1, 32",
        ),
        ("input_dtype", "uint8", r"input_dtype uint8, the library takes int8"),
    ],
)
def test_manifest_that_does_not_match_its_library_is_named(
    library, tmp_path, tracker_port, field, value, message, capsys
):
    """An edited manifest is checked against the input signature compiled into the library,
    on the device, before ``main`` runs (it used to fail there as an empty RPC error)."""
    copy = tmp_path / "edited.so"
    shutil.copy(library, copy)
    data = json.loads(manifest_path(library).read_text())
    data[field] = value
    manifest_path(copy).write_text(json.dumps(data))
    request = BenchRequest(
        copy, f"127.0.0.1:{tracker_port}", "local", out=tmp_path, config=FAST, progress=False
    )
    with pytest.raises(ValueError, match=rf"manifest of 'edited.so' does not match.*{message}"):
        run_bench(request)
    args = ["bench", str(copy), "--tracker", f"127.0.0.1:{tracker_port}", "--key", "local"]
    assert main([*args, "--out", str(tmp_path), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "does not match the library" in err and "Traceback" not in err


def test_ctrl_c_during_bench_keeps_the_partial_report(artifact, tracker_port, tmp_path):
    """SIGINT while ``intvit bench --compare`` builds its FP32 baseline: exit 130, no
    traceback, and the report already holds the integer-only latency."""
    import signal

    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "intvit.cli", "bench", str(artifact), "--compare", "--quiet"]
    cmd += ["--tracker", f"127.0.0.1:{tracker_port}", "--key", "local", "--out", str(out)]
    cmd += ["--repeat", "3", "--number", "2", "--model", "digits_vit"]
    job = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a test run started in the background inherits SIGINT ignored, and Python then
        # installs no KeyboardInterrupt handler: the job as a user's shell starts it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 300

        report = out / f"bench-{artifact.name.split('.')[0]}-local.json"

        def timed() -> bool:
            try:
                return bool(json.loads(report.read_text())["latencies"])
            except (OSError, json.JSONDecodeError):
                return False

        while not timed() and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if job.poll() is not None:
            pytest.fail(f"bench ended before it could be interrupted: {job.communicate()[1]}")
        job.send_signal(signal.SIGINT)
        _, err = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 130, err[-2000:]
    assert "Traceback" not in err and f"the partial report is in {out}" in err
    labels = [lat["label"] for lat in json.loads(report.read_text())["latencies"]]
    assert labels[0] == "intvit integer-only"


def test_profile_categories():
    assert categorize("b3_fc1") == "gemm" and categorize("batch_matmul1") == "gemm"
    assert categorize("softmax2") == "softmax" and categorize("rq7") == "requantize"
    assert categorize("layer_norm") == "layernorm" and categorize("gelu") == "gelu"
    assert categorize("transpose3") == "other"


def test_report_names_are_claimed_not_overwritten(tmp_path):
    """Two benches of one library into one folder (even concurrent) get distinct reports."""
    from concurrent.futures import ThreadPoolExecutor

    from intvit.api.bench import claim_report_name

    with ThreadPoolExecutor(8) as pool:
        names = list(pool.map(lambda _: claim_report_name(tmp_path, "bench-vit-local"), range(8)))
    assert sorted(names) == sorted(
        ["bench-vit-local"] + [f"bench-vit-local-{i}" for i in range(2, 9)]
    )
    assert len(list(tmp_path.glob("bench-vit-local*.json"))) == 8


def test_servers_are_counted_per_exact_key():
    """``aarch64`` never counts ``emu-aarch64``'s servers; a server listed twice counts once."""
    summary = {
        "server_info": [
            {"key": "server:emu-aarch64", "addr": ["127.0.0.1", 1]},
            {"key": "server:aarch64", "addr": ["127.0.0.1", 2]},
            {"key": "server:aarch64", "addr": ["127.0.0.1", 2]},
            {"key": "server:aarch64", "addr": ["127.0.0.1", 3]},
        ],
        "queue_info": {"aarch64": {"free": 1}},
    }
    assert rpc.servers_by_key(summary) == {"emu-aarch64": 1, "aarch64": 2}
    assert rpc.servers_for_key(summary, "aarch64") == 2
    assert rpc.servers_for_key(summary, "emu") == 0


def test_a_benchmark_run_keeps_the_other_cases_of_its_host_file(tmp_path):
    """A run over one model replaces that model's records in the host's results file and
    keeps the other models' (a rerun of DeiT-tiny must not drop DeiT-small's figures); a file
    that is not a list of records is refused, not overwritten."""
    from intvit.bench.records import BenchRecord, RecordLog, host_named, machine_info

    out = tmp_path / "e2e.json"
    path = host_named(out, machine_info())
    old = [
        {"case": "deit_small", "ours": "a", "baseline": "b", "ours_ms": 2.0, "baseline_ms": 3.0},
        {"case": "deit_tiny", "ours": "a", "baseline": "b", "ours_ms": 9.0, "baseline_ms": 9.0},
    ]
    path.write_text(json.dumps(old))
    log = RecordLog.on_this_machine(out)
    log.add(BenchRecord("deit_tiny", "a", "b", 1.0, 2.0))
    log.add(BenchRecord("deit_tiny", "a", "c", 1.0, 4.0))
    body = json.loads(path.read_text())
    assert [(d["case"], d["baseline_ms"]) for d in body] == [
        ("deit_small", 3.0),
        ("deit_tiny", 2.0),
        ("deit_tiny", 4.0),
    ]
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON list of benchmark records"):
        RecordLog.on_this_machine(out)
    assert path.read_text() == "{not json"
