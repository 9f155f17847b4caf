"""The ``intvit`` command line. Each subcommand parses arguments and calls a typed function in
:mod:`intvit.api`; heavy modules (TVM, torch) are imported only inside the handlers, so
``intvit --help`` starts fast.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (counts, sizes, trials)."""
    return _bounded_int(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    return _bounded_int(text, 0)


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (budgets)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be a finite number > 0")
    return value


def _bounded_int(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} must be >= {low}")
    return value


def _cmd_report(args: argparse.Namespace) -> int:
    from intvit.api.report import build_report, format_report, write_report

    reports = build_report(progress=not args.quiet)
    print(format_report(reports))
    path = write_report(reports, args.out / "kernel_report.json")
    print(f"\nreport written to {path}")
    if args.bench:
        from intvit.bench.kernels import run_kernel_bench
        from intvit.bench.records import format_table, machine_info, write_records

        machine = machine_info()
        print(f"\nbenchmark (batch 1, {machine['cpu']}, {machine['threads']} thread(s)):")
        records = run_kernel_bench(batches=(1,), min_repeat_ms=30)
        print(format_table(records))
        print(f"written to {write_records(args.out / 'kernel_bench.json', records, machine)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the embedded default: the whole pipeline, end to end."""
    from intvit.api.demo import PipelineConfig, run_pipeline

    summary = run_pipeline(PipelineConfig(out=args.out, progress=not args.quiet))
    return 0 if summary.bit_exact else 1


def _cmd_kernels(args: argparse.Namespace) -> int:
    from intvit.api.kernels import format_kernels

    print(format_kernels(args.op))
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    from intvit.api.compile import CompileRequest, run_compile

    request = CompileRequest(
        artifact=Path(args.artifact),
        output=args.output,
        target=args.target,
        batch=args.batch,
        profile=args.profile,
        schedules=args.schedules,
        db=args.db,
    )
    result = run_compile(request)
    print(f"library written to {result.library}")
    if result.not_replayed:
        print(
            f"kept the default schedule of {len(result.not_replayed)} kernel(s) whose tuning "
            f"record does not replay on them: {', '.join(result.not_replayed)}"
        )
    if result.memory is not None:
        print(result.memory.summary())
    if result.link_command is not None:
        print(f"link it on a Mac with: {result.link_command}")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from intvit.api.tune import run_tune
    from intvit.tune.job import TuneConfig

    _interrupt_on_sigterm()

    cfg = TuneConfig(
        preset=args.target,
        trials=args.trials,
        db=args.db,
        tracker=args.tracker,
        key=args.key,
        trials_per_task=args.trials_per_task,
        batch=args.batch,
        ops=tuple(args.ops.split(",")) if args.ops else None,
        progress=not args.quiet,
    )
    result = run_tune(Path(args.artifact), cfg)
    if result.gemms:
        print("GEMM knobs (shape, micro-kernel, default, best measured):")
        for gemm in result.gemms:
            print(f"  {gemm.row()}")
    print(f"apply it with: {result.apply_command}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from intvit.api.bench import BenchRequest, run_bench
    from intvit.deploy.bench import BenchConfig, DeviceError

    config = BenchConfig(
        warmup=args.warmup,
        number=args.number,
        repeat=args.repeat,
        step_timeout_s=args.timeout,
        queue_timeout_s=args.queue_timeout,
    )
    request = BenchRequest(
        Path(args.source),
        args.tracker,
        args.key,
        target=args.target,
        compare=args.compare,
        per_op=args.per_op,
        float_model=args.model,
        checkpoint=args.checkpoint,
        out=args.out,
        config=config,
        progress=not args.quiet,
    )
    if args.modelled is not None:
        import tempfile

        from intvit.analysis.qemu_count import CountError
        from intvit.bench.modelled import format_profile, library_profile

        core = None if args.modelled == "auto" else args.modelled
        try:
            with tempfile.TemporaryDirectory(prefix="intvit-modelled-") as work:
                profile, note = library_profile(Path(args.source), core, Path(work))
        except CountError as err:
            print(f"intvit: modelled profile: {err}", file=sys.stderr)
            return 2
        print(format_profile(profile, note))
    try:
        report, paths = run_bench(request)
    except DeviceError as err:
        print(f"intvit: device error: {err}", file=sys.stderr)
        return 3
    print(f"{report.model} on device {report.device!r} ({report.preset}):")
    golden = report.device_info.get("golden")
    if golden:
        exact = sum(golden.values())
        names = ", ".join(f"{name} {'exact' if ok else 'DIFFERS'}" for name, ok in golden.items())
        print(f"golden vectors: {exact}/{len(golden)} bit-exact on the device ({names})")
    else:
        print("golden vectors: none in the manifest (an FP32 library, or an older export)")
    print(report.table())
    print("\nreports: " + ", ".join(str(p) for p in paths.values()))
    return 0 if report.device_info.get("bit_exact", True) else 1


def _interrupt_on_sigterm() -> None:
    """SIGTERM and SIGHUP (a closed terminal) end a long-running command as Ctrl-C does, so
    its ``finally`` blocks run (a service's whole process group stops, nothing is left
    listening)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, INTERRUPTS.handler)


def _cmd_device(args: argparse.Namespace) -> int:
    from intvit.api import device

    _interrupt_on_sigterm()
    if args.action == "list":
        print(device.format_queues(device.device_queues(args.tracker)))
        return 0
    if args.action == "tracker":
        return device.run_tracker(args.port, args.host)
    return device.run_device(args.tracker, args.key, args.action == "emulate-arm", args.cpu)


def _cmd_targets(args: argparse.Namespace) -> int:
    from intvit.api.targets import format_targets, target_rows

    print(format_targets(target_rows()))
    return 0


def _spec(args: argparse.Namespace):
    from intvit.api.quantize import ModelSpec

    return ModelSpec(
        args.model, args.checkpoint, args.pretrained, args.data, args.calib, args.limit
    )


def _config(args: argparse.Namespace):
    from intvit.quant.config import QuantConfig

    return QuantConfig(
        softmax=args.softmax,
        gelu=args.gelu or QuantConfig.gelu,
        layernorm=args.layernorm,
        observer=args.observer,
        weight_bits=args.weight_bits,
    )


def _cmd_quantize(args: argparse.Namespace) -> int:
    from intvit.api.quantize import quantize
    from intvit.paths import check_writable
    from intvit.quant.artifact import save_int_model

    check_writable(args.output, "integer model")
    fit = args.gelu is None  # GELU-less checkpoints default to the relu variant
    _, int_model = quantize(_spec(args), _config(args), progress=not args.quiet, fit=fit)
    path = save_int_model(int_model, args.output)
    print(f"integer model ({int_model.config.label}) written to {path}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from intvit.api.train import TrainRequest, run_train
    from intvit.models.recipe import TrainConfig

    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        shift=args.shift,
    )
    result = run_train(
        TrainRequest(args.arch, args.output, config=cfg, progress=not args.quiet, data=args.data)
    )
    print(
        f"{result.checkpoint}: {result.params:,} parameters, float top-1 "
        f"{100 * result.top1:.1f}% on the {result.data} test split "
        f"(quantize it: intvit quantize {result.checkpoint} -o model.safetensors)"
    )
    return 0


def _finetune_config(args: argparse.Namespace):
    """The ``--finetune-*`` options as a FinetuneConfig, or None for ``--finetune-epochs 0``."""
    if not args.finetune_epochs:
        return None
    from intvit.nas.finetune import FinetuneConfig

    return FinetuneConfig(
        epochs=args.finetune_epochs,
        lr=args.finetune_lr,
        seed=args.seed,
        shift=args.finetune_shift,
    )


def _add_finetune_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--finetune-epochs",
        type=non_negative_int,
        default=0,
        help="fine-tune the subnet on the train and validation splits first (0: inherited "
        "weights, as AutoFormer deploys them)",
    )
    p.add_argument("--finetune-lr", type=positive_float, default=2e-3)
    p.add_argument(
        "--finetune-shift", type=non_negative_int, default=2, help="augment: random shift"
    )


def _cmd_nas(args: argparse.Namespace) -> int:
    from intvit.api import nas

    if args.nas_command == "train-supernet":
        from intvit.nas.space import load_space
        from intvit.nas.train import SupernetConfig

        cfg = SupernetConfig(
            args.epochs, args.batch_size, args.lr, args.weight_decay, args.seed, args.shift
        )
        result = nas.run_train_supernet(
            load_space(args.space), args.data, args.output, cfg, not args.quiet
        )
        print(
            f"supernet {result.checkpoint} ({result.seconds:.0f} s): validation top-1 "
            f"{100 * result.largest_val_top1:.1f}% (largest subnet), "
            f"{100 * result.smallest_val_top1:.1f}% (smallest), inherited weights"
        )
        return 0
    if args.nas_command == "evolve-space":
        from intvit.nas.space import load_space
        from intvit.nas.space_evolution import EvolutionConfig

        cfg = EvolutionConfig(
            max_memory_bytes=int(args.max_memory_kib * 1024),
            candidates=args.candidates,
            iterations=args.iterations,
            epochs_per_iteration=args.epochs_per_iteration,
            n_acc=args.n_acc,
            n_ratio=args.n_ratio,
            min_gain=args.min_gain,
            seed=args.seed,
            shift=args.shift,
        )
        summary = nas.run_evolve_space(
            nas.EvolveSpaceRequest(
                load_space(args.space),
                args.out,
                cfg,
                args.data,
                args.target,
                args.final_epochs,
                not args.quiet,
            )
        )
        print(
            f"optimal sub-space {summary.optimal} (best in {summary.selected} of "
            f"{summary.iterations} iterations): mean top-1 {100 * summary.accuracy:.1f}%, "
            f"{100 * summary.ratio:.0f}% of its subnets within "
            f"{args.max_memory_kib:g} KiB ({summary.seconds:.0f} s)"
        )
        print(f"space: {summary.optimal_space}; plot: {summary.plot}")
        if summary.optimal_supernet is not None:
            print(f"its supernet: {summary.optimal_supernet}")
        else:
            print(
                f"next: intvit nas train-supernet --space {summary.optimal_space} "
                f"--data {args.data} -o supernet.pt"
            )
        return 0
    if args.nas_command == "extract":
        path = nas.run_extract(
            args.supernet, args.arch, args.output, _finetune_config(args), args.data,
            not args.quiet,
        )  # fmt: skip
        how = "fine-tuned" if args.finetune_epochs else "inherited weights"
        print(
            f"subnet ({how}) written to {path} "
            f"(quantize it: intvit quantize {path} -o subnet.safetensors)"
        )
        return 0
    from intvit.nas.search import Constraints, EvolutionConfig

    limits = Constraints(
        max_params=args.max_params,
        max_macs=args.max_macs,
        max_memory_bytes=None if args.max_memory_kib is None else int(args.max_memory_kib * 1024),
        max_latency_ms=args.max_latency_ms,
    )
    config = EvolutionConfig(
        population=args.population,
        generations=args.generations,
        parents=args.parents,
        crossover=args.crossover,
        mutation=args.mutation,
        seed_measurements=args.seed_measurements,
        final_measurements=args.final_measurements,
        int_fitness=args.int_fitness,
        seed=args.seed,
    )
    request = nas.SearchRequest(
        args.supernet,
        args.out,
        data=args.data,
        constraints=limits,
        config=config,
        tracker=args.tracker,
        key=args.key,
        target=args.target,
        progress=not args.quiet,
        finetune=_finetune_config(args),
    )
    summary = nas.run_search(request)
    lat = summary.best_latency_ms
    print(
        f"best subnet {summary.best_arch}: validation top-1 "
        f"{100 * summary.best_val_top1:.1f}%"
        + (f", {lat:.3f} ms measured on {args.key!r}" if lat is not None else "")
        + f", {summary.best_params:,} parameters"
        + (", inherited weights" if summary.finetune is None else "; then fine-tuned")
    )
    if summary.predictor_mape is not None:
        print(
            f"latency predictor error on the re-measured candidates: "
            f"{100 * summary.predictor_mape:.1f}% (MAPE)"
        )
    print(
        f"library {summary.library} (bit-exact: {summary.bit_exact}); "
        f"every evaluated subnet, the Pareto fronts and the plot in {args.out}"
    )
    return 0


def _cmd_relu_distill(args: argparse.Namespace) -> int:
    from intvit.api.relu_distill import DistillRequest, format_report, run_relu_distill
    from intvit.models.gelu_less import DistillConfig

    spec = _spec(args)
    distill = DistillConfig(
        epochs_per_block=args.epochs_per_block,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        temperature=args.temperature,
        seed=args.seed,
    )
    out = args.out or Path("out") / f"{args.model}_gelu_less.pt"
    request = DistillRequest(
        spec,
        out,
        distill,
        args.train_data,
        args.train_limit,
        args.ablation,
        not args.no_eval,
        not args.quiet,
    )
    report = run_relu_distill(request)
    if report.results:
        print(format_report(report))
    print(
        f"GELU-less checkpoint: {out} (quantize it: intvit quantize {args.model} "
        f"--checkpoint {out} -o model.safetensors); report: {report.report}"
    )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from intvit.api.eval import (
        evaluate,
        evaluate_variants,
        format_results,
        save_results,
        variant_configs,
    )

    spec = _spec(args)
    if args.int_model:
        from intvit.quant.artifact import load_int_model

        int_model = load_int_model(args.int_model)
        model = spec.load_float(not args.quiet)
        test = spec.split("test", int_model.arch.img_size)
        results = [evaluate(model, int_model, test, spec.name, args.memory)]
    else:
        configs = variant_configs(_config(args)) if args.all_variants else [_config(args)]
        results = evaluate_variants(spec, configs, not args.quiet, args.memory)
    print(format_results(results))
    if args.json:
        print(f"written to {save_results(results, args.json)}")
    return 0


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        help="timm name (vit_*, deit_*), a small config (digits_vit, mnist_vit, ...) or a "
        "checkpoint that carries its arch (intvit train, intvit nas extract)",
    )
    p.add_argument("--checkpoint", help="local state dict of the float model")
    p.add_argument("--pretrained", action="store_true", help="download timm's weights")
    p.add_argument(
        "--data",
        help="digits, mnist (built in) or an ImageFolder root (default: the model's own data)",
    )
    p.add_argument(
        "--calib",
        type=positive_int,
        default=None,
        help="calibration images (default: the built-in data's calibration split, 97 of a folder)",
    )
    p.add_argument("--limit", type=positive_int, default=None, help="test images from --data")
    p.add_argument("--softmax", default="edge")
    p.add_argument(
        "--gelu", default=None, help="GELU variant (default: lut; relu for GELU-less models)"
    )
    p.add_argument("--layernorm", default="edge")
    p.add_argument("--observer", default="minmax", choices=["minmax", "percentile", "mse"])
    p.add_argument(
        "--weight-bits",
        type=int,
        default=8,
        choices=[7, 8],
        help="weight width (7: x86 AVX2's vpmaddubsw GEMM, ~1.2x faster, exact)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intvit", description="Integer-only vision transformers compiled with TVM."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    report = sub.add_parser(
        "report", help="kernel report: accuracy vs float, truncation audit (and speed)"
    )
    report.add_argument("--bench", action="store_true", help="also time every kernel vs FP32")
    report.add_argument("--out", type=Path, default=Path("out"), help="folder for the JSON")
    report.add_argument("--quiet", action="store_true", help="no progress bar")
    report.set_defaults(func=_cmd_report)

    demo = sub.add_parser(
        "demo", help="the main job: digits ViT quantized, compiled, benchmarked, exported"
    )
    demo.add_argument("--out", type=Path, default=Path("out"), help="folder for the outputs")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_cmd_demo)

    kernels = sub.add_parser("kernels", help="list the integer kernel variants")
    kernels.add_argument("--op", choices=["softmax", "gelu", "layernorm"], default=None)
    kernels.set_defaults(func=_cmd_kernels)

    quant = sub.add_parser("quantize", help="calibrate a float model into an integer model")
    _add_model_args(quant)
    quant.add_argument("-o", "--output", type=Path, required=True, help="a .safetensors file")
    quant.set_defaults(func=_cmd_quantize)

    tr = sub.add_parser(
        "train", help="train a heterogeneous ViT (an arch JSON) on a built-in data set"
    )
    tr.add_argument("arch", help="an arch JSON file or a shipped arch (digits_odd, ...)")
    tr.add_argument("--data", default="digits", help="built-in data: digits or mnist")
    tr.add_argument("-o", "--output", type=Path, required=True, help="the checkpoint (.pt)")
    tr.add_argument("--epochs", type=positive_int, default=60)
    tr.add_argument("--batch-size", type=positive_int, default=64)
    tr.add_argument("--lr", type=float, default=2e-3)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument(
        "--shift", type=non_negative_int, default=0, help="augment: random shift, pixels"
    )
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_cmd_train)

    nas_p = sub.add_parser("nas", help="architecture search: supernet, extraction, evolution")
    nas_sub = nas_p.add_subparsers(dest="nas_command", required=True)
    ts = nas_sub.add_parser("train-supernet", help="train a weight-entangled supernet")
    ts.add_argument("--space", required=True, help="a space JSON or a shipped one (digits, ...)")
    ts.add_argument(
        "--data", default="digits", help="digits, mnist (built in), or a folder with train/val/test"
    )
    ts.add_argument("--epochs", type=positive_int, default=200)
    ts.add_argument("--batch-size", type=positive_int, default=64)
    ts.add_argument("--lr", type=float, default=2e-3)
    ts.add_argument("--weight-decay", type=float, default=0.05)
    ts.add_argument("--seed", type=int, default=0)
    ts.add_argument(
        "--shift", type=non_negative_int, default=2, help="augment: random shift, pixels"
    )
    ts.add_argument("-o", "--output", type=Path, required=True, help="the checkpoint (.pt)")
    ts.add_argument("--quiet", action="store_true", help="no progress bar")
    ts.set_defaults(func=_cmd_nas)
    ev = nas_sub.add_parser(
        "evolve-space",
        help="MCUFormer's search-space evolution under a compiled-memory budget",
    )
    ev.add_argument("--space", required=True, help="a space JSON or a shipped one (digits, ...)")
    ev.add_argument(
        "--data", default="digits", help="digits, mnist (built in), or a folder with train/val/test"
    )
    ev.add_argument(
        "--max-memory-kib",
        type=positive_float,
        required=True,
        help="budget: planned activations + weights of the compiled integer library",
    )
    ev.add_argument("--candidates", type=positive_int, default=4, help="sub-spaces (n)")
    ev.add_argument("--iterations", type=positive_int, default=3, help="tau")
    ev.add_argument("--epochs-per-iteration", type=positive_int, default=2, help="t")
    ev.add_argument("--n-acc", type=positive_int, default=8, help="subnets sampled for top-1")
    ev.add_argument("--n-ratio", type=positive_int, default=20, help="subnets for the ratio")
    ev.add_argument("--min-gain", type=float, default=0.005, help="score gain to move a window")
    ev.add_argument("--target", default="host", help="preset of the compiled memory plan")
    ev.add_argument("--final-epochs", type=non_negative_int, default=0,
                    help="then train the optimal space's supernet this many epochs")  # fmt: skip
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument(
        "--shift", type=non_negative_int, default=2, help="augment: random shift, pixels"
    )
    ev.add_argument("--out", type=Path, default=Path("out/nas-space"), help="results and state")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=_cmd_nas)
    ex = nas_sub.add_parser("extract", help="a subnet of a supernet as a float checkpoint")
    ex.add_argument("supernet", type=Path)
    ex.add_argument("--arch", type=Path, required=True, help="subnet choice or ViT arch JSON")
    ex.add_argument("-o", "--output", type=Path, required=True)
    ex.add_argument("--data", default=None, help="for fine-tuning (default: the supernet's)")
    _add_finetune_options(ex)
    ex.add_argument("--seed", type=int, default=0, help="fine-tuning's seed")
    ex.add_argument("--quiet", action="store_true", help="no progress bar")
    ex.set_defaults(func=_cmd_nas)
    se = nas_sub.add_parser("search", help="evolutionary search under device constraints")
    se.add_argument("supernet", type=Path)
    se.add_argument("--data", default="digits", help="digits, mnist, or a folder")
    se.add_argument("--out", type=Path, default=Path("out/nas"), help="results and state")
    se.add_argument("--max-params", type=positive_int, default=None)
    se.add_argument("--max-macs", type=positive_int, default=None)
    se.add_argument(
        "--max-memory-kib",
        type=float,
        default=None,
        help="planned activations + weights of the compiled integer library",
    )
    se.add_argument(
        "--max-latency-ms",
        type=float,
        default=None,
        help="integer-only latency on the --tracker/--key device",
    )
    se.add_argument("--tracker", default=None, help="RPC tracker HOST:PORT")
    se.add_argument("--key", default=None, help="device key")
    se.add_argument("--target", default="host", help="the devices' preset")
    se.add_argument("--population", type=positive_int, default=50)
    se.add_argument("--generations", type=positive_int, default=20)
    se.add_argument("--parents", type=positive_int, default=10)
    se.add_argument("--crossover", type=non_negative_int, default=25)
    se.add_argument("--mutation", type=non_negative_int, default=25)
    se.add_argument("--seed-measurements", type=non_negative_int, default=24)
    se.add_argument("--final-measurements", type=positive_int, default=8)
    se.add_argument("--int-fitness", action="store_true", help="integer-only top-1 as fitness")
    se.add_argument("--seed", type=int, default=0)
    _add_finetune_options(se)
    se.add_argument("--quiet", action="store_true", help="no progress bars")
    se.set_defaults(func=_cmd_nas)

    rd = sub.add_parser(
        "relu-distill",
        help="GELU-less model: GELU -> ReLU block by block with distillation "
        "(Faster Integer Swin, 2024)",
    )
    rd.add_argument("model", help="timm name or a small config (digits_vit, digits_swin, ...)")
    rd.add_argument("--checkpoint", help="the float (teacher) model's weights")
    rd.add_argument("--pretrained", action="store_true", help="timm's weights as the teacher")
    rd.add_argument(
        "--data",
        help="built-in data or ImageFolder for calibration and test (default: the model's)",
    )
    rd.add_argument(
        "--train-data",
        help="ImageFolder of distillation images (default: the built-in train split)",
    )
    rd.add_argument(
        "--train-limit", type=positive_int, default=None, help="distil on the first N images"
    )
    rd.add_argument(
        "--calib", type=positive_int, default=None, help="calibration images (as quantize)"
    )
    rd.add_argument("--limit", type=positive_int, default=None, help="test images from --data")
    rd.add_argument("--epochs-per-block", type=non_negative_int, default=1)
    rd.add_argument("--lr", type=float, default=1e-2)
    rd.add_argument("--momentum", type=float, default=0.9)
    rd.add_argument("--weight-decay", type=float, default=0.0)
    rd.add_argument("--batch-size", type=positive_int, default=32)
    rd.add_argument("--temperature", type=float, default=1.0)
    rd.add_argument("--seed", type=int, default=0)
    rd.add_argument(
        "-o", "--out", type=Path, default=None, help="checkpoint (default out/<model>_gelu_less.pt)"
    )
    rd.add_argument(
        "--ablation", action="store_true", help="also swap all blocks at once, without/with KD"
    )
    rd.add_argument("--no-eval", action="store_true", help="distil only, no accuracy table")
    rd.add_argument("--quiet", action="store_true", help="no progress bars")
    rd.set_defaults(func=_cmd_relu_distill)

    ev = sub.add_parser("eval", help="FP32 vs integer-only top-1, agreement, truncation")
    _add_model_args(ev)
    ev.add_argument("--int-model", help="evaluate this saved integer model")
    ev.add_argument("--all-variants", action="store_true", help="the full variant table")
    ev.add_argument("--json", type=Path, help="also write the results here")
    ev.add_argument(
        "--no-memory",
        dest="memory",
        action="store_false",
        help="skip the host library's memory plan (lowering each model)",
    )
    ev.set_defaults(func=_cmd_eval)

    comp = sub.add_parser("compile", help="compile an integer model into a deployable library")
    comp.add_argument("artifact", help="an integer model (.safetensors) from intvit quantize")
    comp.add_argument("--target", default="host", help="a preset (intvit targets lists them)")
    comp.add_argument("--batch", type=positive_int, default=1)
    comp.add_argument("-o", "--output", type=Path, required=True, help="the library (.so)")
    comp.add_argument("--db", type=Path, default=None, help="tuning database (intvit tune)")
    comp.add_argument("--profile", action="store_true", help="also the kernel library")
    comp.add_argument(
        "--no-schedules", dest="schedules", action="store_false", help="TVM default lowering"
    )
    comp.set_defaults(func=_cmd_compile)

    dev = sub.add_parser("device", help="RPC tracker, device servers, the emulated ARM device")
    dev.add_argument("action", choices=["tracker", "serve", "emulate-arm", "list"])
    dev.add_argument("--port", type=int, default=None, help="tracker port (default: free)")
    dev.add_argument("--host", default="127.0.0.1", help="tracker address (0.0.0.0: all)")
    dev.add_argument("--tracker", default="127.0.0.1:9190", help="tracker HOST:PORT")
    dev.add_argument("--key", default="emu-aarch64", help="device key to register under")
    dev.add_argument("--cpu", default=None, help="emulated core (QEMU_CPU), e.g. cortex-a72")
    dev.set_defaults(func=_cmd_device)

    tun = sub.add_parser("tune", help="MetaSchedule tuning job with a resumable database")
    tun.add_argument("artifact", help="an integer model (.safetensors)")
    tun.add_argument("--target", default="host", help="a preset (intvit targets lists them)")
    tun.add_argument("--trials", type=positive_int, default=64, help="trials in all")
    tun.add_argument("--trials-per-task", type=positive_int, default=None)
    tun.add_argument("--db", type=Path, default=Path("tune-db"), help="database folder")
    tun.add_argument("--tracker", default=None, help="measure on an RPC device: HOST:PORT")
    tun.add_argument("--device", dest="key", default=None, help="its key")
    tun.add_argument(
        "--ops",
        default=None,
        help="only kernels of these kinds (packed_gemm, low_rank_gemm, softmax, gelu, layernorm, "
        "...) or with these name prefixes (a,b)",
    )
    tun.add_argument("--batch", type=positive_int, default=1)
    tun.add_argument("--quiet", action="store_true", help="no progress bar")
    tun.set_defaults(func=_cmd_tune)

    bench = sub.add_parser("bench", help="latency on an RPC device, vs FP32 and peers")
    bench.add_argument("source", help="an integer model (.safetensors) or an exported .so")
    bench.add_argument("--tracker", default="127.0.0.1:9190", help="tracker HOST:PORT")
    bench.add_argument("--key", "--device", dest="key", default="local", help="device key")
    bench.add_argument("--target", default=None, help="preset (default: from the device)")
    bench.add_argument("--compare", action="store_true", help="also FP32 TVM (+torch, ORT)")
    bench.add_argument("--per-op", action="store_true", help="per-operator profile")
    bench.add_argument(
        "--modelled",
        nargs="?",
        const="auto",
        default=None,
        metavar="CORE",
        help="first print the library's modelled profile on an ARM core (exact instruction "
        "counts under QEMU, llvm-mca cycles): graviton, graviton3, rpi4 or rpi5 (default: "
        "the library's preset)",
    )
    bench.add_argument("--model", default=None, help="float model for --compare")
    bench.add_argument("--checkpoint", default=None, help="its weights (default: random)")
    bench.add_argument("--out", type=Path, default=Path("out/bench"), help="report folder")
    bench.add_argument("--warmup", type=non_negative_int, default=3)
    bench.add_argument("--number", type=positive_int, default=10, help="runs per sample")
    bench.add_argument("--repeat", type=positive_int, default=15, help="samples")
    bench.add_argument("--timeout", type=float, default=300, help="seconds per device step")
    bench.add_argument("--queue-timeout", type=float, default=900, help="seconds in queue")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(func=_cmd_bench)

    targets = sub.add_parser("targets", help="list the target presets")
    targets.set_defaults(func=_cmd_targets)
    return parser


#: What an interrupted command keeps, by subcommand (each saves as it goes).
KEPT_ON_INTERRUPT = {
    "tune": lambda a: f"the tuning records measured so far are in {a.db}",
    "bench": lambda a: f"the partial report is in {a.out}",
    "search": lambda a: f"the search state is in {a.out}; rerun the same command to resume",
    "train-supernet": lambda a: f"the last finished epoch is in {a.output}; rerun to resume",
    "evolve-space": lambda a: (
        f"the evolution state is in {a.out}; rerun the same command to resume"
    ),
    "relu-distill": lambda a: "the finished blocks are in the checkpoint; rerun to resume",
}


@dataclass(frozen=True)
class Output:
    """An output a command writes: the option's attribute, a file or a folder, and what it
    holds (for the message). Each is checked before the command does any work."""

    attr: str
    folder: bool
    what: str
    #: held by this run alone (:func:`intvit.paths.exclusive`): a resumable job's state
    exclusive: bool = False


#: Every command's outputs, by command (``nas <sub>`` for the nas subcommands).
OUTPUTS: dict[str, tuple[Output, ...]] = {
    "quantize": (Output("output", False, "integer model"),),
    "compile": (Output("output", False, "library"),),
    "train": (Output("output", False, "checkpoint"),),
    "relu-distill": (Output("out", False, "checkpoint"),),
    "eval": (Output("json", False, "results"),),
    "bench": (Output("out", True, "report folder"),),
    "tune": (Output("db", True, "tuning database", exclusive=True),),
    "report": (Output("out", True, "report folder"),),
    "demo": (Output("out", True, "output folder"),),
    "nas train-supernet": (Output("output", False, "supernet checkpoint", exclusive=True),),
    "nas extract": (Output("output", False, "checkpoint"),),
    "nas search": (Output("out", True, "search folder", exclusive=True),),
    "nas evolve-space": (Output("out", True, "space-evolution folder", exclusive=True),),
}


def _outputs(args: argparse.Namespace) -> list[tuple[Output, Path]]:
    sub = getattr(args, "nas_command", None)
    command = f"nas {sub}" if args.command == "nas" and sub else args.command
    return [
        (out, Path(getattr(args, out.attr)))
        for out in OUTPUTS.get(command, ())
        if getattr(args, out.attr, None) is not None
    ]


def check_outputs(args: argparse.Namespace) -> None:
    """ValueError for the first output of the command in ``args`` that cannot be written."""
    from intvit.paths import check_folder_writable, check_writable

    for out, path in _outputs(args):
        (check_folder_writable if out.folder else check_writable)(path, out.what)


def run_holding_outputs(args: argparse.Namespace) -> int:
    """Run the command with its exclusive outputs held (a second run into the same search
    folder, supernet or tuning database is refused with the holder's PID)."""
    import contextlib

    from intvit.paths import exclusive

    with contextlib.ExitStack() as stack:
        for out, path in _outputs(args):
            if out.exclusive:
                stack.enter_context(exclusive(path, out.what))
        return args.func(args)


#: After Ctrl-C, how long a command may take to unwind (a device call blocked in C, a TVM
#: pass) before the process exits anyway; what was measured is on disk by then.
INTERRUPT_GRACE_S = 10.0


class Interrupts:
    """Ctrl-C (and the SIGTERM/SIGHUP the service commands turn into it) as KeyboardInterrupt,
    with two guarantees: an error that TVM makes of an interrupt inside its C++ code still
    counts as the interrupt, and the process ends within :data:`INTERRUPT_GRACE_S` even when
    a call does not return."""

    def __init__(self) -> None:
        self.received = False

    def install(self):
        """Handle SIGINT (main thread only); returns the handler to restore."""
        import signal
        import threading

        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.SIG_IGN or threading.current_thread() is not threading.main_thread():
            return None  # started in the background with interrupts ignored: keep it so
        self.received = False
        signal.signal(signal.SIGINT, self.handler)
        return previous

    def handler(self, signum, frame) -> None:
        if not self.received:
            import threading

            self.received = True
            timer = threading.Timer(INTERRUPT_GRACE_S, self.force_exit)
            timer.daemon = True
            timer.start()
        raise KeyboardInterrupt

    @staticmethod
    def force_exit() -> None:
        import os

        print(
            f"intvit: interrupted (a step did not return within {INTERRUPT_GRACE_S:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        os._exit(130)


INTERRUPTS = Interrupts()


def main(argv: list[str] | None = None) -> int:
    from intvit.deploy.threads import use_physical_cores

    use_physical_cores()
    args = build_parser().parse_args(argv)
    previous = INTERRUPTS.install()
    try:
        check_outputs(args)
        return run_holding_outputs(args)
    except KeyboardInterrupt:
        return _interrupted(args)
    except ValueError as err:
        if INTERRUPTS.received:
            return _interrupted(args)
        print(f"intvit: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a vanished folder: the OS's reason and the file
        if INTERRUPTS.received:
            return _interrupted(args)
        where = f" {err.filename!r}" if err.filename else ""
        print(f"intvit: error:{where} {err.strerror or err}", file=sys.stderr)
        return 1
    except Exception:
        if INTERRUPTS.received:  # TVM turned the interrupt into its own error
            return _interrupted(args)
        raise
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGINT, previous)


def _interrupted(args: argparse.Namespace) -> int:
    name = getattr(args, "nas_command", None) or args.command
    kept = KEPT_ON_INTERRUPT.get(name)
    print(f"intvit: interrupted{'; ' + kept(args) if kept else ''}", file=sys.stderr, flush=True)
    return 130


if __name__ == "__main__":
    sys.exit(main())
