"""Attention implementations: `sdpa` (fused scaled-dot-product attention) against `eager` (explicit softmax of
Q·Kᵀ, the only one that returns attention weights), on `ViTForFER`."""

import dataclasses

from workloads import Bench, build_model, make_batch


def run(bench: Bench) -> None:
    cases = {}
    for implementation in ("eager", "sdpa"):
        workload = dataclasses.replace(bench.workload, attn_implementation=implementation)
        model = build_model("ViTForFER", workload)
        batch = make_batch(model, workload.batch_size, workload.device)
        cases[implementation] = (model, batch, workload.autocast_dtype)
    bench.compare("attention", cases, baseline="eager")
