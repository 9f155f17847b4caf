"""The float peers measured in-process on the host: PyTorch eager, ONNX Runtime (FP32, and
int8 with static QDQ or dynamic quantization) and OpenVINO (FP32, and int8 through NNCF's
post-training quantization), all at the same thread count as TVM."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from intvit.deploy.bench import BenchConfig, Latency


def _time(fn: Callable[[], object], cfg: BenchConfig) -> list[float]:
    for _ in range(cfg.warmup):
        fn()
    samples = []
    for _ in range(cfg.repeat):
        start = time.perf_counter()
        for _ in range(cfg.number):
            fn()
        samples.append((time.perf_counter() - start) * 1e3 / cfg.number)
    return samples


def _timed(runners: dict[str, Callable[[], object]], threads: int, cfg: BenchConfig):
    """Each runner's latency, timed one after another, by its label."""
    return [
        Latency(label, "host", _time(run, cfg), f"{threads} thread(s)")
        for label, run in runners.items()
    ]


TORCH_EAGER = "PyTorch eager FP32"


def torch_runner(model, image: np.ndarray, threads: int) -> Callable[[], object]:
    """One inference of ``model`` on ``image`` in PyTorch eager mode, ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    x = torch.from_numpy(image)

    def run():
        with torch.inference_mode():
            return model(x)

    return run


def torch_eager(model, image: np.ndarray, threads: int, cfg: BenchConfig) -> Latency:
    samples = _time(torch_runner(model, image, threads), cfg)
    return Latency(TORCH_EAGER, "host", samples, f"{threads} thread(s)")


def export_onnx(model, image: np.ndarray, path: Path) -> Path:
    """The float model as ONNX (TorchScript exporter, opset 17)."""
    import warnings

    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on timm's shape checks
        torch.onnx.export(
            model,
            (torch.from_numpy(image),),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            opset_version=17,
            dynamo=False,
        )
    return path


class _Calibration:
    """ORT's calibration reader over a few images."""

    def __init__(self, images: np.ndarray):
        self.items = iter([{"image": images[i : i + 1]} for i in range(len(images))])

    def get_next(self):
        return next(self.items, None)


#: ONNX Runtime int8 modes: static QDQ, dynamic, and dynamic with 7-bit weights
#: (``reduce_range``: what ORT advises on x86 without VNNI, like intvit's weight_bits=7).
ORT_INT8_MODES = ("static", "dynamic", "dynamic, 7-bit weights")


def quantize_onnx(fp32: Path, mode: str, calib: np.ndarray, out: Path) -> Path:
    """ONNX Runtime int8 in one of :data:`ORT_INT8_MODES` (static: QDQ, calibrated on
    ``calib``)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    if mode.startswith("dynamic"):
        quantize_dynamic(
            str(fp32), str(out), weight_type=QuantType.QInt8, reduce_range="7-bit" in mode
        )
    else:
        quantize_static(
            str(fp32),
            str(out),
            _Calibration(calib),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    return out


def onnxruntime_runner(path: Path, image: np.ndarray, threads: int) -> Callable[[], object]:
    """One inference of the ONNX model at ``path`` in ONNX Runtime (CPU, ``threads`` intra-op
    threads); the session holds the model, so ``path`` may go afterwards."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {"image": image}
    return lambda: sess.run(None, feed)


OPENVINO_FP32 = "OpenVINO FP32"
OPENVINO_INT8 = "OpenVINO int8 (NNCF)"


def onnxruntime_available() -> bool:
    """ONNX Runtime and the ``onnx`` package (torch's ONNX export needs it): the ``peers``
    extra."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def openvino_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None and onnxruntime_available()


def nncf_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def _openvino_compiled_runner(ov_model, image: np.ndarray, threads: int):
    """One inference of an OpenVINO model compiled for the CPU with ``threads`` inference
    threads (latency hint: one stream, as the others run; FP32 where a layer is not int8: no
    bf16 on AMX-capable CPUs)."""
    import openvino as ov

    config = {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_PRECISION_HINT": "f32",
    }
    request = ov.Core().compile_model(ov_model, "CPU", config).create_infer_request()
    return lambda: request.infer({0: image})


def openvino_runner(path: Path, image: np.ndarray, threads: int) -> Callable[[], object]:
    """One inference of the ONNX model at ``path`` compiled by OpenVINO (FP32)."""
    import openvino as ov

    return _openvino_compiled_runner(ov.Core().read_model(str(path)), image, threads)


def openvino_int8_runner(
    path: Path, image: np.ndarray, threads: int, calib: np.ndarray
) -> Callable[[], object]:
    """The ONNX model at ``path`` quantized to int8 by NNCF's post-training quantization
    (``nncf.quantize``, transformer preset: int8 weights per channel, int8 activations
    calibrated on ``calib``, one image a sample), compiled by OpenVINO."""
    import contextlib
    import io
    import logging

    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    samples = [calib[i : i + 1] for i in range(len(calib))]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quantized = nncf.quantize(  # its own progress bars would cut through intvit's
            ov.Core().read_model(str(path)),
            nncf.Dataset(samples),
            subset_size=len(samples),
            model_type=nncf.ModelType.TRANSFORMER,
        )
    return _openvino_compiled_runner(quantized, image, threads)


def openvino_runners(
    model, image: np.ndarray, threads: int, int8: bool = True
) -> dict[str, Callable[[], object]]:
    """OpenVINO FP32 and, with ``int8`` and NNCF installed, OpenVINO int8 (NNCF), by label;
    none without openvino."""
    if not openvino_available():
        return {}
    with tempfile.TemporaryDirectory(prefix="intvit-openvino-") as tmp:
        path = export_onnx(model, image, Path(tmp) / "model.onnx")
        runners = {OPENVINO_FP32: openvino_runner(path, image, threads)}
        if int8 and nncf_available():
            calib = _calibration_images(image)
            runners[OPENVINO_INT8] = openvino_int8_runner(path, image, threads, calib)
        return runners


def openvino_peers(
    model, image: np.ndarray, threads: int, cfg: BenchConfig, int8: bool = True
) -> list[Latency]:
    """OpenVINO FP32 and int8 (NNCF) on the same ONNX export as ONNX Runtime's, timed one
    after another."""
    return _timed(openvino_runners(model, image, threads, int8), threads, cfg)


def _calibration_images(image: np.ndarray, count: int = 8) -> np.ndarray:
    """``count`` random images shaped like ``image`` (random weights, random data: the peers
    are timed, not scored), the same for every int8 peer."""
    calib = np.random.default_rng(0).standard_normal((count, *image.shape[1:]))
    return calib.astype(np.float32)


def onnxruntime_runners(
    model, image: np.ndarray, threads: int, int8: bool = False
) -> dict[str, Callable[[], object]]:
    """ORT FP32 and, with ``int8``, ORT int8 (:data:`ORT_INT8_MODES`), by label; none without
    the ``peers`` extra."""
    if not onnxruntime_available():
        return {}
    with tempfile.TemporaryDirectory(prefix="intvit-onnx-") as tmp:
        fp32 = export_onnx(model, image, Path(tmp) / "model.onnx")
        runners = {"ONNX Runtime FP32": onnxruntime_runner(fp32, image, threads)}
        if int8:
            calib = _calibration_images(image)
            for i, mode in enumerate(ORT_INT8_MODES):
                q = quantize_onnx(fp32, mode, calib, Path(tmp) / f"model.int8-{i}.onnx")
                runners[f"ONNX Runtime int8 {mode}"] = onnxruntime_runner(q, image, threads)
        return runners


def onnxruntime_peers(
    model, image: np.ndarray, threads: int, cfg: BenchConfig, int8: bool = False
) -> list[Latency]:
    """ORT FP32 and, with ``int8``, ORT int8 (:data:`ORT_INT8_MODES`), timed one after
    another."""
    return _timed(onnxruntime_runners(model, image, threads, int8), threads, cfg)
