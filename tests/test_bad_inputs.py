"""The red-team table: bad inputs a careless or hostile user gives the command line, each a
row of (command, input, expected message fragment). Every row must exit non-zero with one
line on stderr naming the file, field or value, and no traceback. New bad cases are new rows.

Inputs are made by the fixtures below: a real integer model, a real library manifest, real
checkpoints and tuning databases, edited the way a user (or a broken disk) would.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from intvit.cli import main


@dataclass(frozen=True)
class Inputs:
    """What the rows are built from."""

    tmp: Path
    artifact: Path  # a valid integer model
    library: Path  # an x86 library's manifest (the file itself is not a real library)
    blocker: Path  # a file where a folder is expected
    supernet: Path  # a digits supernet trained for one epoch

    def edited_artifact(self, name: str, edit: Callable[[dict], None]) -> Path:
        """A copy of the integer model with its tensors edited by ``edit``."""
        from intvit.quant.artifact import load_int_model, save_int_model

        model = load_int_model(self.artifact)
        tensors = dict(model.tensors)
        edit(tensors)
        return save_int_model(replace(model, tensors=tensors), self.tmp / name)

    def edited_meta(self, name: str, edit: Callable[[dict], None]) -> Path:
        """A copy of the integer model with its metadata (JSON strings) edited by ``edit``."""
        from safetensors import safe_open
        from safetensors.numpy import save_file

        with safe_open(str(self.artifact), framework="numpy") as f:
            meta = dict(f.metadata())
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        edit(meta)
        path = self.tmp / name
        save_file(tensors, str(path), metadata=meta)
        return path

    def space(self, name: str, **changes) -> Path:
        from intvit.nas import space as space_module

        shipped = Path(space_module.__file__).parent / "spaces" / "digits.json"
        body = json.loads(shipped.read_text())
        body.update(changes)
        path = self.tmp / name
        path.write_text(json.dumps(body))
        return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    from intvit.deploy.manifest import LibraryManifest, write_manifest
    from intvit.models.datasets import digits
    from intvit.models.zoo import create_float_model
    from intvit.quant.artifact import save_int_model
    from intvit.quant.calibrate import calibrate

    tmp = tmp_path_factory.mktemp("bad")
    torch.manual_seed(0)
    model = calibrate(create_float_model("digits_vit"), digits("calib").images[:8])
    artifact = save_int_model(model, tmp / "vit.safetensors")
    library = tmp / "vit.so"
    library.write_bytes(b"\x7fELF not really")
    target = {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}
    write_manifest(
        library,
        LibraryManifest("host", target, "x86_64", (1, 1, 32, 32), "int8", "int", "digits_vit"),
    )
    blocker = tmp / "a-file"
    blocker.write_text("in the way")
    supernet = tmp / "supernet.pt"
    argv = ["nas", "train-supernet", "--space", "digits", "--epochs", "1", "-o", str(supernet)]
    assert main([*argv, "--quiet"]) == 0
    return Inputs(tmp, artifact, library, blocker, supernet)


def _search_with_state(i: Inputs, name: str, body: object) -> list[str]:
    """``nas search`` into a folder whose ``state.json`` holds ``body``."""
    out = i.tmp / name
    out.mkdir(exist_ok=True)
    (out / "state.json").write_text(json.dumps(body))
    return ["nas", "search", str(i.supernet), "--out", str(out), "--max-params", "100000"]


def _nan_checkpoint(i: Inputs) -> Path:
    from intvit.models.zoo import create_float_model

    state = create_float_model("digits_vit").state_dict()
    state["blocks.0.mlp.fc1.weight"][0, 0] = float("nan")
    path = i.tmp / "nan.pt"
    torch.save(state, path)
    return path


def _supernet_file(i: Inputs) -> Path:
    path = i.tmp / "fake-supernet.pt"
    torch.save({"format": "intvit-supernet", "model": {}}, path)
    return path


def _plain_state(i: Inputs) -> Path:
    from intvit.models.zoo import create_float_model

    path = i.tmp / "plain.pt"
    torch.save(create_float_model("digits_vit").state_dict(), path)
    return path


def _truncated(i: Inputs) -> Path:
    full = _plain_state(i).read_bytes()
    path = i.tmp / "truncated.pt"
    path.write_bytes(full[: len(full) // 2])
    return path


def _database(i: Inputs, record: str) -> Path:
    db = i.tmp / "db"
    db.mkdir(exist_ok=True)
    (db / "database_workload.json").write_text('["0x1", "{}"]\n')
    (db / "database_tuning_record.json").write_text(record + "\n")
    return db


def _empty_dir(i: Inputs) -> Path:
    path = i.tmp / "empty"
    path.mkdir(exist_ok=True)
    return path


def _busy_port(i: Inputs) -> str:
    """A port something listens on while the row runs (held by the module's socket)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    _HELD.append(sock)
    return str(sock.getsockname()[1])


_HELD: list[socket.socket] = []


def _wide_arch(i: Inputs) -> Path:
    """digits_odd's arch with every width about 10^9."""
    from intvit.models.hetero_vit import ARCHS_DIR

    body = json.loads((ARCHS_DIR / "digits_odd.json").read_text())
    body["dim"] = 3 * 10**9
    for block in body["blocks"]:
        block.update(attn_dim=3 * 10**9, mlp_hidden=10**9)
    path = i.tmp / "wide-arch.json"
    path.write_text(json.dumps(body))
    return path


def _set_scale(key: str, value: object) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        scales = json.loads(meta["scales"])
        scales[key] = value
        meta["scales"] = json.dumps(scales)

    return edit


def _compile(i: Inputs, artifact: Path) -> list[str]:
    return ["compile", str(artifact), "-o", str(i.tmp / "x.so")]


def _zero_scales(t: dict) -> None:
    t["b0.fc1.ws"] = np.zeros_like(t["b0.fc1.ws"])


def _nan_gamma(t: dict) -> None:
    t["b1.ln1.gamma"] = np.full_like(t["b1.ln1.gamma"], np.nan)


@dataclass(frozen=True)
class Case:
    name: str
    argv: Callable[[Inputs], list[str]]
    message: str
    code: int = 2


CASES = [
    # outputs that cannot be written are refused before any work
    Case(
        "quantize -o under a file",
        lambda i: ["quantize", "digits_vit", "-o", f"{i.blocker}/m.safetensors"],
        "is a file",
    ),
    Case(
        "train -o under a file",
        lambda i: ["train", "digits_odd", "-o", f"{i.blocker}/m.pt"],
        "cannot write the checkpoint",
    ),
    Case(
        "relu-distill -o under a file",
        lambda i: ["relu-distill", "digits_vit", "-o", f"{i.blocker}/g.pt"],
        "cannot write the checkpoint",
    ),
    Case(
        "bench --out a file",
        lambda i: ["bench", str(i.library), "--out", str(i.blocker)],
        "cannot write the report folder",
    ),
    Case(
        "nas train-supernet -o under a file",
        lambda i: ["nas", "train-supernet", "--space", "digits", "-o", f"{i.blocker}/s.pt"],
        "cannot write the supernet checkpoint",
    ),
    Case(
        "eval --json under a file",
        lambda i: ["eval", "digits_vit", "--json", f"{i.blocker}/r.json"],
        "cannot write the results",
    ),
    Case(
        "tune --db a file",
        lambda i: ["tune", str(i.artifact), "--db", str(i.blocker)],
        "cannot write the tuning database",
    ),
    Case(
        "a file name over 255 bytes",
        lambda i: ["quantize", "digits_vit", "-o", str(i.tmp / ("m" * 300 + ".safetensors"))],
        "bytes; file systems take at most 255",
    ),
    # integer models and checkpoints are validated when loaded
    Case(
        "artifact missing a bias",
        lambda i: [
            "compile",
            str(i.edited_artifact("nob.safetensors", lambda t: t.pop("b2.fc2.b"))),
            "-o",
            str(i.tmp / "x.so"),
        ],
        "tensor 'b2.fc2.b' is missing",
    ),
    Case(
        "artifact with zero weight scales",
        lambda i: [
            "compile",
            str(i.edited_artifact("zero.safetensors", _zero_scales)),
            "-o",
            str(i.tmp / "x.so"),
        ],
        "weight scales 'b0.fc1.ws' must be > 0; one is 0.0",
    ),
    Case(
        "artifact with NaN LayerNorm gamma",
        lambda i: [
            "compile",
            str(i.edited_artifact("nan.safetensors", _nan_gamma)),
            "-o",
            str(i.tmp / "x.so"),
        ],
        "tensor 'b1.ln1.gamma' holds NaN or inf",
    ),
    Case(
        "a scale that is text",
        lambda i: _compile(i, i.edited_meta("text.safetensors", _set_scale("b0.q", "x"))),
        "scale 'b0.q' = 'x' is not a number",
    ),
    Case(
        "a scale that is NaN",
        lambda i: _compile(i, i.edited_meta("nanscale.safetensors", _set_scale("b0.q", "nan"))),
        "scale 'b0.q' = nan must be finite and > 0",
    ),
    Case(
        "a scale so large a ratio needs more than 32 bits",
        lambda i: _compile(i, i.edited_meta("huge.safetensors", _set_scale("b0.ln1", 1e30))),
        "LayerNorm b0.ln1 (scale 'b0.ln1'): out_scale=1e+30 is out of range",
    ),
    Case(
        "m_star that is an object",
        lambda i: _compile(
            i, i.edited_meta("mstar.safetensors", lambda m: m.update(m_star='{"a": 1}'))
        ),
        "m_star is a JSON dict, not a list (one per block)",
    ),
    Case(
        "an m_star entry that is text",
        lambda i: _compile(
            i, i.edited_meta("mstar2.safetensors", lambda m: m.update(m_star='["x", 9, 9, 9]'))
        ),
        "m_star[0] = 'x' is not an integer",
    ),
    Case(
        "checkpoint with NaN weights",
        lambda i: [
            "quantize",
            "digits_vit",
            "--checkpoint",
            str(_nan_checkpoint(i)),
            "-o",
            str(i.tmp / "m.safetensors"),
        ],
        "NaN or inf in: blocks.0.mlp.fc1.weight",
    ),
    Case(
        "a supernet given as the model",
        lambda i: ["quantize", str(_supernet_file(i)), "-o", str(i.tmp / "m.safetensors")],
        "is a supernet; take a subnet out of it first",
    ),
    Case(
        "a plain state dict given as the model",
        lambda i: ["quantize", str(_plain_state(i)), "-o", str(i.tmp / "m.safetensors")],
        "is a state dict without its arch; give the model's name and the file as --checkpoint",
    ),
    Case(
        "a truncated checkpoint given as the model",
        lambda i: ["quantize", str(_truncated(i)), "-o", str(i.tmp / "m.safetensors")],
        "is not a readable checkpoint (truncated, or not a PyTorch file)",
    ),
    # data
    Case(
        "--calib beyond the built-in split",
        lambda i: ["quantize", "digits_vit", "--calib", "100000", "-o", str(i.tmp / "m.st")],
        "--calib 100000: the digits calib split holds 97 images",
    ),
    Case(
        "--data an empty folder",
        lambda i: ["quantize", "digits_vit", "--data", str(_empty_dir(i)), "-o", str(i.tmp / "m")],
        "holds no class folders of images",
    ),
    Case(
        "--data a file",
        lambda i: ["quantize", "digits_vit", "--data", str(i.blocker), "-o", str(i.tmp / "m")],
        "is a file; give a built-in data set (digits, mnist) or an ImageFolder root",
    ),
    Case(
        "a space of 5 classes on digits",
        lambda i: [
            "nas",
            "train-supernet",
            "--space",
            str(i.space("five.json", num_classes=5)),
            "-o",
            str(i.tmp / "s.pt"),
        ],
        "num_classes=5, but the digits labels run to 9",
    ),
    Case(
        "a space of 3 channels on digits",
        lambda i: [
            "nas",
            "train-supernet",
            "--space",
            str(i.space("rgb.json", in_chans=3)),
            "-o",
            str(i.tmp / "s.pt"),
        ],
        "in_chans=3, but the digits images have 1 channel",
    ),
    # search state files
    Case(
        "a supernet file without its space",
        lambda i: [
            "nas",
            "search",
            str(_supernet_file(i)),
            "--max-params",
            "9",
            "--out",
            str(i.tmp / "s1"),
        ],
        "lacks space, supernet",
    ),
    Case(
        "a search state that is a list",
        lambda i: _search_with_state(i, "list", [1, 2]),
        "holds a JSON list, not an object",
    ),
    Case(
        "a search state without its space",
        lambda i: _search_with_state(i, "nospace", {"version": 1, "history": {}}),
        "lacks space, config, constraints, generation, population, rng, measured",
    ),
    # sizes refused before allocation, with the figure
    Case(
        "a space whose embedding is 10^9 wide",
        lambda i: [
            "nas",
            "train-supernet",
            "--space",
            str(i.space("wide.json", embed_dim=[10**9])),
            "-o",
            str(i.tmp / "s.pt"),
        ],
        "GiB to train (4 float32 copies), more than the",
    ),
    Case(
        "a space 10^5 blocks deep",
        lambda i: [
            "nas",
            "train-supernet",
            "--space",
            str(i.space("deep.json", depth=[100000])),
            "-o",
            str(i.tmp / "s.pt"),
        ],
        "depth 100000 is more than the 1000 allowed",
    ),
    Case(
        "an arch 10^9 wide",
        lambda i: ["train", str(_wide_arch(i)), "-o", str(i.tmp / "w.pt")],
        "GiB to train (4 float32 copies), more than the",
    ),
    Case(
        "a memory budget no subnet meets",
        lambda i: [
            "nas",
            "search",
            str(i.supernet),
            "--max-memory-kib",
            "1",
            "--out",
            str(i.tmp / "tiny-budget"),
        ],
        "no subnet fits 1.0 KiB: the smallest in the space needs",
    ),
    # tuning databases
    Case(
        "compile --db with a record of the wrong types",
        lambda i: [
            "compile",
            str(i.artifact),
            "--db",
            str(_database(i, '[0, [[], ["fast"], {}, []]]')),
            "-o",
            str(i.tmp / "x.so"),
        ],
        "database_tuning_record.json' line 1 has run seconds ['fast']",
    ),
    # services
    Case(
        "tracker port out of range",
        lambda i: ["device", "tracker", "--port", "70000"],
        "port 70000 must be an integer in [1, 65534]",
    ),
    Case(
        "tracker port in use",
        lambda i: ["device", "tracker", "--port", _busy_port(i)],
        "is taken",
    ),
    # bench requests that cannot give a meaningful report
    Case(
        "bench --target unknown",
        lambda i: ["bench", str(i.library), "--target", "nosuch", "--out", str(i.tmp / "b")],
        "target preset='nosuch' is not supported",
    ),
    Case(
        "bench --target of another architecture",
        lambda i: ["bench", str(i.library), "--target", "rpi4", "--out", str(i.tmp / "b")],
        "the preset is for aarch64, but 'vit.so' was compiled for x86_64",
    ),
    Case(
        "bench --compare with a model of another family",
        lambda i: [
            "bench",
            str(i.library),
            "--compare",
            "--model",
            "digits_swin",
            "--out",
            str(i.tmp / "b"),
        ],
        "--model digits_swin is a swin, but 'vit.so' holds a vit",
    ),
    Case(
        "bench --timeout 0",
        lambda i: ["bench", str(i.library), "--timeout", "0", "--out", str(i.tmp / "b")],
        "step_timeout_s=0.0 must be a finite number of seconds > 0",
    ),
    Case(
        "bench --timeout nan",
        lambda i: ["bench", str(i.library), "--timeout", "nan", "--out", str(i.tmp / "b")],
        "step_timeout_s=nan must be a finite number of seconds > 0",
    ),
    Case(
        "bench --queue-timeout -5",
        lambda i: ["bench", str(i.library), "--queue-timeout", "-5", "--out", str(i.tmp / "b")],
        "queue_timeout_s=-5.0 must be a finite number of seconds > 0",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_naming_it(case: Case, inputs: Inputs, capsys):
    argv = case.argv(inputs)
    capsys.readouterr()
    try:
        code = main([*argv, "--quiet"] if _takes_quiet(argv) else argv)
    finally:
        while _HELD:
            _HELD.pop().close()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == case.code, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("intvit: error:"), err
    assert case.message in lines[0], lines[0]


def _takes_quiet(argv: list[str]) -> bool:
    """Whether the command has a ``--quiet`` flag (those with progress bars)."""
    return argv[0] in ("quantize", "train", "relu-distill", "eval", "tune", "bench") or (
        argv[:2] in (["nas", "train-supernet"], ["nas", "search"])
    )


def test_bench_leaves_no_stale_report(inputs: Inputs, capsys):
    """A refused bench writes nothing: no ``{"status": "starting"}`` report is left."""
    out = inputs.tmp / "stale"
    assert main(["bench", str(inputs.library), "--target", "rpi4", "--out", str(out)]) == 2
    assert out.is_dir() and not list(out.glob("*.json"))


def test_a_search_folder_in_use_is_refused_with_its_holder(inputs: Inputs, capsys):
    """An exclusive output (search folder, supernet, tuning database) is held while its job
    runs; a second job into it is refused with the holder's PID."""
    import os

    from intvit.paths import exclusive

    out = inputs.tmp / "held"
    with exclusive(out, "search folder"):
        argv = ["nas", "search", str(inputs.supernet), "--out", str(out), "--max-params", "9"]
        assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"the search folder {str(out)!r} is in use by process {os.getpid()}" in err
    with exclusive(out, "search folder"):  # released when the holder is done
        pass


@pytest.fixture
def full_disk(tmp_path):
    """A 100 KiB tmpfs: a real full disk (needs root and mount; skipped elsewhere)."""
    import shutil
    import subprocess

    mount = tmp_path / "tiny"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_leaves_nothing(inputs: Inputs, full_disk, capsys):
    """quantize (safetensors) and compile (the linker) on a full disk: one line naming the
    file and the OS's reason, exit 2, and no file, partial or temporary, left there."""
    argv = ["quantize", "digits_vit", "--calib", "8", "--quiet", "-o"]
    assert main([*argv, str(full_disk / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the integer model" in err and "No space left on device" in err, err
    assert main(["compile", str(inputs.artifact), "-o", str(full_disk / "m.so")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the library" in err and "No space left on device" in err, err
    assert "Traceback" not in err
    assert not list(full_disk.iterdir())


def test_outputs_get_the_usual_mode(inputs: Inputs, tmp_path):
    """An integer model is written with the usual mode (0666 less the umask), not the 0600
    of a temporary file: the user's group can read what the user can."""
    import os

    from intvit.quant.artifact import load_int_model, save_int_model

    mask = os.umask(0o022)
    try:
        path = save_int_model(load_int_model(inputs.artifact), tmp_path / "m.safetensors")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_legal_long_name_is_written(tmp_path):
    """A 250-byte file name is legal (the limit is 255): the checks and the temporary file
    beside it keep it legal, where a temporary name of the full name plus a suffix would
    not be."""
    from intvit.paths import atomic_output, check_writable

    path = tmp_path / ("n" * 240 + ".safetensors")
    assert len(path.name.encode()) == 252
    check_writable(path, "integer model")
    with atomic_output(path) as tmp:
        tmp.write_text("whole")
    assert path.read_text() == "whole"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
