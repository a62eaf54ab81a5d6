"""CPU time of `import vit_fer` against `import transformers, torch`, each in fresh processes, interleaved.

    python benchmarks/import_time.py [--repetitions 5]

Each repetition starts one fresh interpreter per statement, in alternating order, and reads the CPU time the import
took in it (`time.process_time`, so other jobs on a loaded machine slow the figures less than wall time would).
Prints the medians and the median of the per-repetition ratios; the target is a ratio of at most 1.3.
"""

import argparse
import statistics
import subprocess
import sys


STATEMENTS = {"baseline": "import transformers, torch", "vit_fer": "import vit_fer"}
PROBE = "import time; start = time.process_time(); {statement}; print(time.process_time() - start)"


def cpu_seconds(statement: str) -> float:
    probe = PROBE.format(statement=statement)
    return float(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    cpu_seconds(STATEMENTS["vit_fer"])  # warm the file-system cache and Python's bytecode cache
    times = {name: [] for name in STATEMENTS}
    ratios = []
    for repetition in range(args.repetitions):
        order = list(STATEMENTS) if repetition % 2 == 0 else list(reversed(STATEMENTS))
        taken = {name: cpu_seconds(STATEMENTS[name]) for name in order}
        for name, seconds in taken.items():
            times[name].append(seconds)
        ratios.append(taken["vit_fer"] / taken["baseline"])
    for name, statement in STATEMENTS.items():
        values = times[name]
        print(f"{statement:<28} CPU {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})")
    print(f"ratio vit_fer / baseline: median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")


if __name__ == "__main__":
    main()
