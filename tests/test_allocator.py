"""The CPU malloc policy: "retain" keeps freed tensors' memory in the process for the next step, "release" returns it
at once; the `FERTrainer` sets the policy `--malloc_policy` resolves to. Each check runs in a fresh subprocess, whose
allocator it may change, and reads the resident size from Linux's /proc."""

import json
import platform
import subprocess
import sys
import textwrap

import pytest

from vit_fer.allocator import set_malloc_policy
from vit_fer.trainer import FERTrainingArguments


pytestmark = [
    pytest.mark.end_to_end,
    pytest.mark.skipif(
        platform.libc_ver()[0] != "glibc", reason="malloc policies are set through glibc's mallopt, which this libc lacks"
    ),
]

BLOCK_MIB = 64

# Allocates and frees a 64 MiB tensor, every page written, then allocates a 48 MiB one (which fits the freed space
# whatever the allocator's alignment padding): prints the resident size above the starting one after the free and
# after the second allocation, in MiB.
PROBE = """
import json
from pathlib import Path
import torch

def resident_mib():
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024

{setup}
# torch's lazy set-up (the thread pool a parallel fill starts) must not count as the block's memory.
torch.ones(2**18).sum()
start = resident_mib()
block = torch.ones({block_mib} * 2**18)
del block
after_free = resident_mib()
block = torch.ones({block_mib} * 3 * 2**16)
print(json.dumps({{"after_free": after_free - start, "after_second": resident_mib() - start}}))
"""


def resident_growth(setup: str, cwd=None) -> dict[str, float]:
    script = PROBE.format(setup=textwrap.dedent(setup), block_mib=BLOCK_MIB)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_retained(growth: dict[str, float]) -> None:
    assert growth["after_free"] > 0.9 * BLOCK_MIB, f"the freed block went back to the system: {growth}"
    assert growth["after_second"] - growth["after_free"] < 0.1 * BLOCK_MIB, (
        f"the next allocation did not reuse the freed memory: {growth}"
    )


def check_released(growth: dict[str, float]) -> None:
    assert growth["after_free"] < 0.1 * BLOCK_MIB, f"the freed block stayed in the process: {growth}"


@pytest.mark.parametrize("policy, check", [("retain", check_retained), ("release", check_released)])
def test_policy_sets_what_happens_to_freed_memory(policy, check):
    check(resident_growth(f"from vit_fer.allocator import set_malloc_policy\nassert set_malloc_policy({policy!r})"))


@pytest.mark.parametrize(
    "activation_checkpointing, check", [(False, check_retained), (True, check_released)], ids=["plain", "checkpointing"]
)
def test_trainer_sets_the_auto_policy_on_cpu(activation_checkpointing, check, tmp_path):
    # "auto" keeps memory for speed, except that activation checkpointing is asked for to lower the footprint.
    setup = f"""
    from transformers import ViTConfig
    from vit_fer import ViTForFER, ViTFERConfig
    from vit_fer.trainer import FERTrainer, FERTrainingArguments

    arguments = FERTrainingArguments(
        output_dir={str(tmp_path)!r},
        use_cpu=True,
        report_to=[],
        eval_strategy="no",
        load_best_model_at_end=False,
        activation_checkpointing={activation_checkpointing},
    )
    model = ViTForFER(ViTFERConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64))
    FERTrainer(model=model, args=arguments)
    """
    check(resident_growth(setup))


def test_unknown_policies_are_refused():
    with pytest.raises(ValueError, match=r"`policy` must be one of \('default', 'retain', 'release'\), got 'fast'"):
        set_malloc_policy("fast")
    with pytest.raises(ValueError, match=r"`malloc_policy` must be one of .*'auto'.*, got 'fast'"):
        FERTrainingArguments(output_dir="unused", malloc_policy="fast")
