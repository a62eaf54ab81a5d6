"""Benchmarks of the vit-fer models side by side with transformers' ViT, in one process (memory in subprocesses).

    python benchmarks/run.py [--quick] [--device cpu|cuda] [--size tiny|small|base] [--json PATH] [--compile]

Every figure is the median of interleaved repetitions after warm-up, with its min–max; see benchmarks/README.md
for what each one means.
"""

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

import torch
import transformers

import group_attention
import group_checkpointing
import group_compile
import group_data
import group_finetuning
import group_inference
import group_machine
import group_models
import group_precision
from harness import Report
from vit_fer.allocator import MALLOC_POLICIES, set_malloc_policy
from workloads import AUTOCAST_DTYPES, MID_VARIANTS, SIZES, VARIANTS, Bench, Workload


GROUPS = ("models", "mid", "attention", "checkpointing", "finetuning", "precision", "data", "inference", "compile")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="ViT-Tiny and fewer repetitions: a few minutes on 2 cores.")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--size", choices=tuple(SIZES), help="Backbone size (default: base; tiny with --quick).")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--precision", choices=tuple(AUTOCAST_DTYPES), default="fp32",
                        help="What every timed step computes in: fp32, or bf16 autocast (the precision group always "
                        "compares the two).")
    parser.add_argument("--repetitions", type=int, help="Timed repetitions per case (default: 3; 3 with --quick).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed calls of each case before timing.")
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS),
                        default=[name for name in VARIANTS if name not in MID_VARIANTS],
                        help="Models of the models group (the mid group times the mid-fusion designs).")
    parser.add_argument("--every_n_layers", type=int, nargs="+", default=[1, 2, 3],
                        help="Activation checkpointing settings to measure (1 = every layer).")
    parser.add_argument("--memory_batch_size", type=int, default=16, help="Batch of the peak-memory subprocesses.")
    parser.add_argument("--memory_budget_gb", type=float, default=8.0,
                        help="Training memory of the models timed side by side against the reference.")
    parser.add_argument("--groups", nargs="+", choices=GROUPS, default=[g for g in GROUPS if g != "compile"],
                        help="Measurement groups to run (compile is opt-in: it takes minutes on CPU).")
    parser.add_argument("--compile", action="store_true", help="Add the torch.compile group.")
    parser.add_argument("--malloc_policy", choices=MALLOC_POLICIES, default="retain",
                        help="CPU malloc policy of the timed steps (default: retain, as train.py's CPU training; the "
                        "memory subprocesses use release). See vit_fer/allocator.py.")
    parser.add_argument("--json", type=Path, help="Write every figure to this JSON file.")
    arguments = parser.parse_args(argv)
    if arguments.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device.")
    for name in ("batch_size", "image_size", "warmup", "memory_batch_size"):
        if getattr(arguments, name) < (0 if name == "warmup" else 1):
            parser.error(f"--{name} must be positive, got {getattr(arguments, name)}.")
    if arguments.image_size % 16:
        parser.error(f"--image_size must be a multiple of the patch size 16, got {arguments.image_size}.")
    arguments.size = arguments.size or ("tiny" if arguments.quick else "base")
    arguments.repetitions = arguments.repetitions or 3
    if arguments.compile and "compile" not in arguments.groups:
        arguments.groups.append("compile")
    return arguments


def settings(arguments: argparse.Namespace) -> dict[str, object]:
    """What the figures depend on, stored with them."""
    return {
        "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
        "size": arguments.size,
        "batch_size": arguments.batch_size,
        "image_size": arguments.image_size,
        "precision": arguments.precision,
        "device": arguments.device,
        "repetitions": arguments.repetitions,
        "warmup": arguments.warmup,
        "malloc_policy": arguments.malloc_policy,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cuda_device": torch.cuda.get_device_name() if arguments.device == "cuda" else None,
        "load_average_at_start": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    if arguments.device == "cpu":
        set_malloc_policy(arguments.malloc_policy)
    report = Report(settings(arguments))
    print("settings: " + ", ".join(f"{key}={value}" for key, value in report.settings.items()), flush=True)
    workload = Workload(
        arguments.size,
        arguments.image_size,
        arguments.batch_size,
        torch.device(arguments.device),
        precision=arguments.precision,
    )
    bench = Bench(workload, arguments.repetitions, arguments.warmup, report)
    start = time.perf_counter()

    print("[machine]", flush=True)
    group_machine.run(bench)
    memory_workload = dataclasses.replace(workload, batch_size=arguments.memory_batch_size)
    runners = {
        "models": lambda: group_models.run(bench, arguments.variants, arguments.memory_budget_gb * 1e9),
        "mid": lambda: group_models.run(bench, list(MID_VARIANTS), arguments.memory_budget_gb * 1e9),
        "attention": lambda: group_attention.run(bench),
        "checkpointing": lambda: group_checkpointing.run(bench, arguments.every_n_layers, memory_workload),
        "finetuning": lambda: group_finetuning.run(bench),
        "precision": lambda: group_precision.run(bench),
        "data": lambda: group_data.run(bench),
        "inference": lambda: group_inference.run(bench),
        "compile": lambda: group_compile.run(bench),
    }
    for group in arguments.groups:
        print(f"[{group}]", flush=True)
        group_start = time.perf_counter()
        runners[group]()
        print(f"[{group}] {time.perf_counter() - group_start:.0f} s", flush=True)

    report.settings["load_average_at_end"] = os.getloadavg()[0]
    report.settings["seconds"] = round(time.perf_counter() - start)
    print(f"\n{report.table()}\n\n{report.settings['seconds']} s; load average {report.settings['load_average_at_start']:.1f} "
          f"at start, {report.settings['load_average_at_end']:.1f} at end (above {torch.get_num_threads()} means other "
          "jobs shared the cores)", flush=True)
    if arguments.json:
        report.write_json(arguments.json)
        print(f"wrote {arguments.json}")


if __name__ == "__main__":
    main()
