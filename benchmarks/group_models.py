"""Our models against transformers' `ViTForImageClassification` on the same config, batch, attention
implementation and precision: train-step and inference time ratios, throughputs, and the share of the machine's
matmul rate (in the run's precision) that the reference and `ViTForFER` reach (FLOPs counted as in flops.py)."""

import gc

import torch

from flops import MatmulProbe, model_forward_flops
from harness import Spread, ratios
from workloads import REFERENCE, Bench, InferenceStep, TrainStep, Workload, build_model, make_batch

# A training step costs its forward three times over (see flops.py).
FORWARDS_PER_STEP = {"train": 3, "inference": 1}
PROBE = "matmul probe"


def side_by_side(names: list[str], workload: Workload, budget_bytes: float) -> list[list[str]]:
    """Splits `names` into groups that are timed together with the reference, each within `budget_bytes` of
    training memory, so that every ratio comes from one interleaved run."""
    reference = workload.train_bytes(REFERENCE)
    groups, current, used = [], [], reference
    for name in names:
        need = workload.train_bytes(name)
        if current and used + need > budget_bytes:
            groups.append(current)
            current, used = [], reference
        current.append(name)
        used += need
    return groups + [current]


def run(bench: Bench, variants: list[str], budget_bytes: float) -> None:
    workload, report = bench.workload, bench.report
    note = f"{workload.attn_implementation}, batch {workload.batch_size}, {workload.precision}"
    for index, group in enumerate(side_by_side(variants, workload, budget_bytes)):
        names = [REFERENCE, *group]
        models = {name: build_model(name, workload) for name in names}
        # The same seed gives every model the same RGB images and labels as the reference.
        batches = {name: make_batch(model, workload.batch_size, workload.device) for name, model in models.items()}
        for mode, step_class in (("train", TrainStep), ("inference", InferenceStep)):
            cases = {name: step_class(models[name], batches[name], workload.autocast_dtype) for name in names}
            step_flops = {
                name: model_forward_flops(models[name]) * FORWARDS_PER_STEP[mode] * workload.batch_size
                for name in names
            }
            if index == 0:
                # As much matmul work as a reference step, timed in turn with the steps.
                cases[PROBE] = MatmulProbe(
                    *workload.largest_matmul, workload.matmul_dtype, workload.device, flops=step_flops[REFERENCE]
                )
            readings = bench.time(cases)
            for name in names:
                if name == REFERENCE and index > 0:
                    continue  # reported once; later groups time it again only to take their ratios against it
                report.add("models", f"{mode}.{name}", bench.throughput(readings[name]), "samples/s", note=note)
            for name, ratio in ratios(readings, REFERENCE).items():
                if name != PROBE:
                    report.add("models", f"{mode}.{name}.ratio", ratio, "× reference time")
            if index == 0:
                for name in (REFERENCE, "ViTForFER"):
                    if name in names:
                        add_matmul_fraction(bench, mode, name, readings, step_flops[name], cases[PROBE].flops)
        del models, batches
        gc.collect()


def add_matmul_fraction(
    bench: Bench, mode: str, name: str, readings: dict[str, list[float]], step_flops: float, probe_flops: float
) -> None:
    """The FLOP rate of `name`'s steps over the matmul probe's, repetition by repetition."""
    precision = bench.workload.precision
    fractions = Spread.of(
        [(step_flops / step) / (probe_flops / probe) for step, probe in zip(readings[name], readings[PROBE])]
    )
    per_sample = step_flops / bench.workload.batch_size / 1e9
    bench.report.add(
        "efficiency",
        f"{mode}.{name}.matmul_fraction",
        fractions,
        f"× {precision} mm rate",
        note=f"{per_sample:.1f} GFLOP/sample",
    )
