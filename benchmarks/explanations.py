#!/usr/bin/env python
"""Explanation maps scored against the truth: the synthetic benchmark knows where the evidence for each class lies
(`vit-fer synthesize` writes an evidence mask per sample and modality), so each method's maps can be scored rather
than only looked at.

    python train.py                                        # the demo model and its data (once)
    python benchmarks/explanations.py                      # scores outputs/demo on its test split
    python benchmarks/explanations.py --model DIR --data DIR --update_readme

For every test sample and modality with evidence (thermal carries none for happy, neutral and sad), each method
explains the sample's true class, and two scores are taken against the mask:

- pointing game: whether the map's maximum falls inside the mask (Zhang et al., 2018);
- mass inside: the share of the map's total mass that lies inside the mask.

A map that knows nothing scores, on average, the mask's share of the image area on both: that is the chance level
printed beside each score. `--update_readme` writes the table between the `<!-- explanation-scores -->` markers of
README.md; the JSON goes to `--output`.
"""

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vit_fer.explain import METHOD_NAMES, METHODS, explain  # noqa: E402
from vit_fer.inference import load_fer_pipeline  # noqa: E402
from vit_fer.robustness import load_model_split  # noqa: E402
from vit_fer.synthetic import MANIFEST_NAME  # noqa: E402
from vit_fer.transforms import FERTransform, input_names_for_config  # noqa: E402


MARKERS = ("<!-- explanation-scores -->", "<!-- /explanation-scores -->")


def mask_paths(data: Path) -> dict[str, dict[str, Path]]:
    """Per RGB or thermal image path (absolute), the evidence mask of each modality, from the benchmark's manifest."""
    with open(data / MANIFEST_NAME, newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows or "rgb_mask" not in rows[0]:
        raise SystemExit(f"{data / MANIFEST_NAME} lists no evidence masks: regenerate the data with `vit-fer synthesize`.")
    masks = {}
    for row in rows:
        pair = {m: (data / row[f"{m}_mask"]).absolute() for m in ("rgb", "thermal")}
        for modality in ("rgb", "thermal"):
            masks[str((data / row[modality]).absolute())] = pair
    return masks


def score(model_dir: str, data: Path, split: str, batch_size: int) -> dict:
    classifier = load_fer_pipeline(model_dir)
    model, processor = classifier.model, classifier.image_processor
    config = model.config
    part = load_model_split(model_dir, data, split, config)
    masks = mask_paths(data)
    names = input_names_for_config(config)
    transform = FERTransform(processor, input_names=names)
    size = (processor.size["height"], processor.size["width"])
    totals = {}  # (method, modality) -> lists of pointing hits, mass shares, area shares
    correct = 0
    start = time.perf_counter()
    for begin in range(0, len(part), batch_size):
        batch = part[begin : begin + batch_size]
        features = transform(batch)
        inputs = {name: torch.stack(features[name]) for name in names.values()}
        labels = torch.tensor(batch["label"])
        key = batch[next(iter(names))]
        truth = {
            modality: torch.stack(
                [
                    torch.from_numpy(np.asarray(Image.open(masks[str(Path(path).absolute())][modality]).resize(
                        size[::-1], Image.NEAREST)) > 0)
                    for path in key
                ]
            )
            for modality in names
        }
        for method in METHODS:
            explanation = explain(model, **inputs, method=method, target=labels)
            if method == METHODS[0]:
                correct += int((explanation.logits.argmax(-1) == labels).sum())
            for modality, maps in explanation.maps.items():
                mask = truth[modality]
                has_evidence = mask.flatten(1).any(dim=1)
                flat_maps, flat_masks = maps.flatten(1)[has_evidence], mask.flatten(1)[has_evidence]
                peak = flat_maps.argmax(dim=1)
                hits = flat_masks.gather(1, peak[:, None])[:, 0].float()
                mass = (flat_maps * flat_masks).sum(1) / flat_maps.sum(1).clamp_min(1e-12)
                area = flat_masks.float().mean(1)
                entry = totals.setdefault((method, modality), {"pointing": [], "mass": [], "area": []})
                entry["pointing"] += hits.tolist()
                entry["mass"] += mass.tolist()
                entry["area"] += area.tolist()
    results = {
        "model": str(model_dir),
        "architecture": type(model).__name__,
        "data": str(data),
        "split": split,
        "num_samples": len(part),
        "accuracy": correct / len(part),
        "explained_class": "true class",
        "seconds": round(time.perf_counter() - start, 1),
        "scores": [
            {
                "method": method,
                "modality": modality,
                "num_samples": len(entry["pointing"]),
                "pointing_game": float(np.mean(entry["pointing"])),
                "mass_inside": float(np.mean(entry["mass"])),
                "chance": float(np.mean(entry["area"])),
            }
            for (method, modality), entry in totals.items()
        ],
    }
    return results


def table(results: dict) -> str:
    lines = [
        "| method | modality | samples with evidence | pointing game | mass inside the mask | chance (mask area) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for entry in results["scores"]:
        lines.append(
            f"| {METHOD_NAMES[entry['method']]} | {entry['modality']} | {entry['num_samples']} | "
            f"{entry['pointing_game']:.3f} | {entry['mass_inside']:.3f} | {entry['chance']:.3f} |"
        )
    return "\n".join(lines)


def update_readme(results: dict, readme: Path) -> None:
    text = readme.read_text()
    begin, end = (text.index(marker) for marker in MARKERS)
    block = (
        f"{MARKERS[0]}\n{results['architecture']} demo model, {results['split']} split ({results['num_samples']} pairs, "
        f"accuracy {results['accuracy']:.3f}), maps of the true class; `python benchmarks/explanations.py`.\n\n"
        f"{table(results)}\n"
    )
    readme.write_text(text[:begin] + block + text[end:])


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="outputs/demo", help="Trained model folder (default: the demo's).")
    parser.add_argument(
        "--data", type=Path, default=Path("data/synthetic-fer-2000-48px-seed0"),
        help="The synthetic benchmark the model was trained on (default: the demo's).",
    )  # fmt: skip
    parser.add_argument("--split", default="test", help="Split to score (default: test).")
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "explanations.json")
    parser.add_argument("--update_readme", action="store_true", help="Write the table into README.md.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = score(args.model, args.data, args.split, args.batch_size)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"accuracy {results['accuracy']:.3f} on {results['num_samples']} pairs; wrote {args.output}")
    if args.update_readme:
        update_readme(results, ROOT / "README.md")


if __name__ == "__main__":
    main()
