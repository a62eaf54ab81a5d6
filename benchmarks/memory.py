"""Peak training-step memory, each configuration in a fresh subprocess so that peaks never mix.

The figure is the peak during the steps minus the memory held once the model, its batch and nothing else exist:
activations, gradients and AdamW state. On CPU it is read from Linux's /proc/self/status (VmHWM, the resident-set
high-water mark, reset to the current size after the model is built); Python's own counters (`tracemalloc`,
`ru_maxrss`) miss torch's allocations or cannot be reset. On CUDA it is torch's allocator peak.

Run as a script, this file is the subprocess: `python memory.py '<json spec>'` prints the peak in bytes.
"""

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from vit_fer.allocator import set_malloc_policy
from workloads import TrainStep, Workload, build_model, make_batch


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"/proc/self/status has no {field} line: memory is measured on Linux only.")


def _peak_in_this_process(spec: dict) -> int:
    set_malloc_policy(spec["malloc_policy"])
    workload = Workload(**{**spec["workload"], "device": torch.device(spec["workload"]["device"])})
    model = build_model(spec["name"], workload)
    if spec["every_n_layers"]:
        model.activation_checkpointing_enable(every_n_layers=spec["every_n_layers"])
    step = TrainStep(model, make_batch(model, workload.batch_size, workload.device), workload.autocast_dtype)
    if workload.device.type == "cuda":
        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        baseline = _status_bytes("VmRSS")
        # Writing 5 to clear_refs resets VmHWM to the current resident size (Linux ≥ 4.0).
        Path("/proc/self/clear_refs").write_text("5")
    for _ in range(spec["steps"]):
        step()
    if workload.device.type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - baseline
    return _status_bytes("VmHWM") - baseline


def peak_step_memory(
    name: str, workload: Workload, every_n_layers: int | None = None, steps: int = 2, malloc_policy: str = "release"
) -> int:
    """Bytes above the built model that `steps` training steps of `name` (see `workloads.build_model`) peak at,
    with activation checkpointing of every `every_n_layers`-th layer, or none.

    By default freed tensors go back to the operating system at once (`malloc_policy="release"`), so that the peak
    is that of the live tensors; glibc's adaptive thresholds would make it depend on the allocation history."""
    fields = {**asdict(workload), "device": str(workload.device)}
    spec = {
        "name": name,
        "workload": fields,
        "every_n_layers": every_n_layers,
        "steps": steps,
        "malloc_policy": malloc_policy,
    }
    result = subprocess.run([sys.executable, __file__, json.dumps(spec)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"The memory subprocess for {spec} failed:\n{result.stderr[-3000:]}")
    return int(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(_peak_in_this_process(json.loads(sys.argv[1])))
