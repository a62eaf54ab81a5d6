"""The machine's matmul rate in fp32 and bf16, on the encoder's largest product: the ceiling that model throughput
is held against, and (bf16 against fp32) the headroom mixed precision has."""

import torch

from flops import MatmulProbe
from workloads import Bench

# Work per timed call: about half a second at fp32 on two cores.
PROBE_FLOPS = 50e9


def run(bench: Bench) -> None:
    workload = bench.workload
    shape = workload.largest_matmul
    probes = {
        name: MatmulProbe(*shape, dtype=dtype, device=workload.device, flops=PROBE_FLOPS)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
    readings = bench.time(probes)
    for name, probe in probes.items():
        rate = bench.throughput(readings[name], samples=probe.flops)
        bench.report.add("machine", f"matmul_{name}", rate, "GFLOP/s", note="mm {}×{}×{}".format(*shape), scale=1e-9)
