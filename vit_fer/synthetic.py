"""A synthetic, registered RGB + thermal facial-expression benchmark on which fusion matters.

Each sample is a parametric face drawn twice from one head pose, once as an RGB photo (written as JPEG) and once as
a radiometric thermal frame (°C, written as 16-bit centi-kelvin PNG), so the pair is pixel-registered and the loader
exercises the same thermal path as real radiometric captures.

Design: the modalities are complementary, as in real captures.

- RGB shows expression geometry (brows, eyes, mouth) and no temperature. Fear and surprise share one geometry
  (raised brows, wide eyes, open mouth), and so do anger and disgust (lowered, knitted brows, narrowed eyes,
  pressed lips): from RGB alone these pairs cannot be told apart.
- Thermal shows facial temperature and no expression geometry (thermal edges are soft and the features move with
  identity only). Regional temperature changes follow the affective-thermography literature in spirit: fear cools
  the nose tip and warms the periorbital region, surprise warms the nose and cools the forehead, anger warms the
  forehead and cheeks, disgust cools the nose and cheeks. Happiness, neutrality and sadness leave the face at its
  baseline: from thermal alone these three cannot be told apart.
- Every class is identified by the pair. With balanced classes the best single-modality accuracy is 5/7 (71 %) for
  either modality, while a model that fuses both can reach 100 %.

Variation: each subject has its own face shape, feature placement, skin tone, hair and eye colours and baseline
facial temperatures; each sample draws its head pose (position, scale, in-plane roll, yaw), expression intensity,
lighting direction and colour cast, background colour and gradient, ambient temperature, and sensor noise (RGB
Gaussian noise; thermal white noise plus column fixed-pattern noise). The sample parameters are drawn independently
of the label, so two labels rendered from the same parameters differ only by what the label changes.

Everything is seeded (`numpy.random.default_rng([seed, ...])` per subject and per sample): the same seed gives the
same files, byte for byte.
"""

import csv
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
from filelock import FileLock
from tqdm.auto import tqdm

from .configuration_vit_fer import FER_LABELS


KELVIN_OFFSET = 273.15
"""Thermal files hold centi-kelvin counts: `counts = round((°C + 273.15) * 100)`, the processor's default decoding."""

MANIFEST_NAME = "manifest.csv"
MASKS_DIR = "evidence_masks"
"""Folder of the evidence masks (see [`evidence_masks`]): `<MASKS_DIR>/<modality>/<label>/<name>.png`, 8-bit, 255
inside the evidence."""

# Facial geometry shown in RGB, per label (deviations from neutral are scaled by the sample's intensity):
# brow raise and inner-end tilt (face units, + = up), eye openness, mouth curvature (+ = smile), mouth width and
# opening.
_GEOMETRY = {
    "neutral": dict(brow_raise=0.0, brow_tilt=0.0, eye_open=1.0, mouth_curve=0.0, mouth_width=0.32, mouth_open=0.0),
    "happy": dict(brow_raise=0.03, brow_tilt=0.0, eye_open=0.6, mouth_curve=0.34, mouth_width=0.5, mouth_open=0.0),
    "sad": dict(brow_raise=0.04, brow_tilt=0.2, eye_open=0.8, mouth_curve=-0.28, mouth_width=0.34, mouth_open=0.0),
    "angry": dict(brow_raise=-0.1, brow_tilt=-0.2, eye_open=0.45, mouth_curve=-0.03, mouth_width=0.26, mouth_open=0.0),
    "fear": dict(brow_raise=0.16, brow_tilt=0.0, eye_open=1.7, mouth_curve=0.0, mouth_width=0.2, mouth_open=1.0),
}
_GEOMETRY["disgust"] = _GEOMETRY["angry"]
_GEOMETRY["surprised"] = _GEOMETRY["fear"]

# Regional temperature changes in °C shown in thermal, per label: forehead, periorbital, nose tip, cheeks.
_THERMAL_DELTAS = {
    "neutral": (0.0, 0.0, 0.0, 0.0),
    "happy": (0.0, 0.0, 0.0, 0.0),
    "sad": (0.0, 0.0, 0.0, 0.0),
    "angry": (2.5, 0.0, 0.0, 1.5),
    "disgust": (0.0, 0.0, -2.5, -1.5),
    "fear": (0.0, 2.0, -3.0, 0.0),
    "surprised": (-2.0, 0.0, 2.0, 0.0),
}

_SKIN_LIGHT = np.array([238.0, 204.0, 176.0])
_SKIN_DARK = np.array([92.0, 58.0, 38.0])
_HAIR_COLOURS = np.array([[25, 20, 18], [70, 45, 25], [120, 80, 40], [200, 170, 110], [140, 60, 30], [150, 150, 150]])
_IRIS_COLOURS = np.array([[60, 35, 20], [40, 70, 110], [60, 90, 50], [30, 25, 20]])


@dataclass(frozen=True)
class SubjectParams:
    """What stays fixed for one person: identity in RGB and baseline temperatures in thermal."""

    face_aspect: float
    eye_spacing: float
    eye_height: float
    mouth_height: float
    brow_thickness: float
    hairline: float
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    skin_temperature: float
    regional_offsets: tuple[float, float, float, float]

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "SubjectParams":
        tone = rng.uniform()
        skin = (1 - tone) * _SKIN_LIGHT + tone * _SKIN_DARK + rng.normal(0, 6, 3)
        return cls(
            face_aspect=rng.uniform(0.72, 0.86),
            eye_spacing=rng.uniform(0.3, 0.38),
            eye_height=rng.uniform(-0.16, -0.08),
            mouth_height=rng.uniform(0.5, 0.6),
            brow_thickness=rng.uniform(0.045, 0.065),
            hairline=rng.uniform(-0.72, -0.58),
            skin=tuple(np.clip(skin, 0, 255).tolist()),
            hair=tuple(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))].astype(float).tolist()),
            iris=tuple(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))].astype(float).tolist()),
            skin_temperature=rng.uniform(33.4, 34.6),
            # Resting forehead, periorbital, nose-tip and cheek temperatures relative to the skin baseline.
            regional_offsets=(
                rng.uniform(0.2, 0.6),
                rng.uniform(0.6, 1.2),
                rng.uniform(-1.4, -0.6),
                rng.uniform(-0.4, 0.2),
            ),
        )


@dataclass(frozen=True)
class SampleParams:
    """What changes from one capture to the next; drawn independently of the label."""

    subject: SubjectParams
    center: tuple[float, float]
    scale: float
    roll: float
    yaw: float
    rgb_intensity: float
    thermal_intensity: float
    light: tuple[float, float, float]
    colour_cast: tuple[float, float, float]
    background: tuple[float, float, float]
    background_gradient: tuple[float, float]
    ambient_temperature: float
    ambient_gradient: tuple[float, float]
    rgb_noise: float
    thermal_noise: float
    noise_seed: int

    @classmethod
    def draw(cls, rng: np.random.Generator, subject: SubjectParams) -> "SampleParams":
        return cls(
            subject=subject,
            center=(0.5 + rng.uniform(-0.05, 0.05), 0.53 + rng.uniform(-0.04, 0.04)),
            scale=rng.uniform(0.38, 0.45),
            roll=math.radians(rng.uniform(-12, 12)),
            yaw=rng.uniform(-0.08, 0.08),
            rgb_intensity=rng.uniform(0.8, 1.15),
            thermal_intensity=rng.uniform(0.8, 1.2),
            light=(rng.uniform(0.75, 1.15), rng.uniform(-0.35, 0.35), rng.uniform(-0.35, 0.35)),
            colour_cast=tuple(rng.uniform(0.9, 1.1, 3).tolist()),
            background=tuple(rng.uniform(30, 225, 3).tolist()),
            background_gradient=tuple(rng.uniform(-60, 60, 2).tolist()),
            ambient_temperature=rng.uniform(20.5, 25.5),
            ambient_gradient=tuple(rng.uniform(-1.0, 1.0, 2).tolist()),
            rgb_noise=rng.uniform(1.5, 6.0),
            thermal_noise=rng.uniform(0.04, 0.12),
            noise_seed=int(rng.integers(2**31)),
        )


class _Canvas:
    """Pixel grid of one size, with the face-frame coordinates of one head pose."""

    def __init__(self, image_size: int, params: SampleParams):
        grid = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size
        self.x, self.y = grid[None, :], grid[:, None]
        dx, dy = self.x - params.center[0], self.y - params.center[1]
        cos, sin = math.cos(params.roll), math.sin(params.roll)
        # Face frame: u across, v down, the face ellipse has half-height 1.
        self.u = (dx * cos + dy * sin) / params.scale
        self.v = (-dx * sin + dy * cos) / params.scale
        self.aspect = params.subject.face_aspect
        self.yaw = params.yaw

    def ellipse(self, cu: float, cv: float, ru: float, rv: float) -> np.ndarray:
        """Squared normalised distance to the centre of an ellipse given in face units (< 1 inside)."""
        return ((self.u - cu - self.yaw) / ru) ** 2 + ((self.v - cv) / rv) ** 2

    def gaussian(self, cu: float, cv: float, su: float, sv: float) -> np.ndarray:
        return np.exp(-0.5 * self.ellipse(cu, cv, su, sv))

    def segment(self, start: tuple[float, float], end: tuple[float, float], half_width: float) -> np.ndarray:
        """Mask of a thick line segment between two face-frame points."""
        (u0, v0), (u1, v1) = start, end
        du, dv = u1 - u0, v1 - v0
        pu, pv = self.u - self.yaw - u0, self.v - v0
        t = np.clip((pu * du + pv * dv) / (du * du + dv * dv), 0.0, 1.0)
        return (pu - t * du) ** 2 + (pv - t * dv) ** 2 < half_width**2


def _geometry(label: str, intensity: float) -> dict[str, float]:
    neutral, target = _GEOMETRY["neutral"], _GEOMETRY[label]
    return {key: neutral[key] + intensity * (target[key] - neutral[key]) for key in neutral}


# The regions the RGB face is painted with (indices into the palette of `_render_rgb`), and those whose appearance the
# label changes: the evidence an RGB model should look at.
_RGB_REGIONS = ("background", "skin", "hair", "sclera", "iris", "brow", "lips", "mouth_inside", "nostril")
_RGB_EVIDENCE_REGIONS = ("brow", "sclera", "iris", "lips", "mouth_inside")
_THERMAL_REGIONS = ("forehead", "periorbital", "nose", "cheeks")
"""The order of the regional offsets and of the `_THERMAL_DELTAS` entries."""


def _thermal_blobs(subject: SubjectParams) -> list[tuple[str, tuple[float, float, float, float]]]:
    """The Gaussian temperature blobs of the face, `(region, (centre u, centre v, sigma u, sigma v))` in face units,
    in the order they are added (which fixes the rendered floats)."""
    blobs = [("forehead", (0.0, -0.5, 0.35, 0.14)), ("nose", (0.0, 0.22, 0.1, 0.1))]
    for side in (-1.0, 1.0):
        blobs.append(("periorbital", (side * (subject.eye_spacing - 0.1), subject.eye_height, 0.09, 0.07)))
        blobs.append(("cheeks", (side * 0.45, 0.28, 0.15, 0.13)))
    return blobs


def _hair(canvas: _Canvas, subject: SubjectParams) -> np.ndarray:
    return (canvas.ellipse(0.0, -0.06, canvas.aspect * 1.1, 1.08) < 1) & (
        canvas.v < subject.hairline + 0.12 * canvas.u**2
    )


def _paint_regions(canvas: _Canvas, label: str, params: SampleParams) -> np.ndarray:
    """The RGB face as a map of `_RGB_REGIONS` indices, painted in depth order."""
    subject, size = params.subject, canvas.u.shape[0]
    geometry = _geometry(label, params.rgb_intensity)
    background, skin, hair, sclera, iris, brow, lips, mouth_inside, nostril = range(len(_RGB_REGIONS))
    regions = np.zeros((size, size), dtype=np.uint8)

    face = canvas.ellipse(0.0, 0.0, canvas.aspect, 1.0)
    regions[_hair(canvas, subject)] = hair
    regions[(face < 1) & (canvas.v >= subject.hairline + 0.12 * canvas.u**2)] = skin

    eye_v, eye_rv = subject.eye_height, 0.085 * geometry["eye_open"]
    brow_v = eye_v - 0.2 - geometry["brow_raise"]
    for side in (-1.0, 1.0):
        eye_u = side * subject.eye_spacing
        eye = canvas.ellipse(eye_u, eye_v, 0.14, eye_rv) < 1
        regions[eye] = sclera
        regions[eye & (canvas.ellipse(eye_u, eye_v, 0.06, 0.06) < 1)] = iris
        inner, outer = (side * 0.08, brow_v - geometry["brow_tilt"]), (side * 0.5, brow_v - 0.03)
        regions[canvas.segment(inner, outer, subject.brow_thickness)] = brow
        regions[canvas.ellipse(side * 0.07, 0.3, 0.045, 0.03) < 1] = nostril

    mouth_v, half_width = subject.mouth_height, geometry["mouth_width"]
    if geometry["mouth_open"] > 0:
        opening = 0.16 * geometry["mouth_open"]
        regions[canvas.ellipse(0.0, mouth_v, half_width + 0.04, opening + 0.04) < 1] = lips
        regions[canvas.ellipse(0.0, mouth_v, half_width, opening) < 1] = mouth_inside
    else:
        # Lips along a parabola whose corners rise by `mouth_curve` (a smile) or fall (a frown).
        across = (canvas.u - canvas.yaw) / half_width
        centre_line = mouth_v + geometry["mouth_curve"] * (0.5 - across**2)
        regions[(np.abs(across) < 1) & (np.abs(canvas.v - centre_line) < 0.065)] = lips
    return regions


def _render_rgb(canvas: _Canvas, label: str, params: SampleParams, rng: np.random.Generator) -> np.ndarray:
    subject = params.subject
    # Regions are painted as indices into a palette (in `_RGB_REGIONS` order), then coloured in one lookup.
    palette = [params.background, subject.skin, subject.hair, (236.0, 236.0, 230.0), subject.iris]
    palette += [tuple(0.35 * np.asarray(subject.hair)), tuple(np.asarray(subject.skin) * (0.62, 0.42, 0.42))]
    palette += [(45.0, 20.0, 22.0), tuple(np.asarray(subject.skin) * 0.6)]
    regions = _paint_regions(canvas, label, params)
    image = np.asarray(palette, dtype=np.float32)[regions]
    background_mask = (regions == _RGB_REGIONS.index("background"))[..., None]
    gradient = params.background_gradient[0] * (canvas.x - 0.5) + params.background_gradient[1] * (canvas.y - 0.5)
    image += background_mask * gradient[..., None]
    # Soften the painted edges (a 2x2 box filter), as a lens would.
    image[1:, 1:] = 0.25 * (image[1:, 1:] + image[:-1, 1:] + image[1:, :-1] + image[:-1, :-1])
    brightness, light_x, light_y = params.light
    shading = brightness * (1 + light_x * (canvas.x - 0.5) + light_y * (canvas.y - 0.5))
    image *= shading[..., None] * np.asarray(params.colour_cast, dtype=np.float32)
    image += rng.standard_normal(image.shape, dtype=np.float32) * params.rgb_noise
    return np.clip(image, 0, 255).astype(np.uint8)


def _render_thermal(canvas: _Canvas, label: str, params: SampleParams, rng: np.random.Generator) -> np.ndarray:
    subject, size = params.subject, canvas.u.shape[0]
    ambient = params.ambient_temperature + (
        params.ambient_gradient[0] * (canvas.x - 0.5) + params.ambient_gradient[1] * (canvas.y - 0.5)
    )
    face = canvas.ellipse(0.0, 0.0, canvas.aspect, 1.0)
    # Skin cools towards the face outline; the soft edge keeps expression geometry out of the thermal frame.
    face_weight = np.clip((1.0 - face) / 0.15, 0.0, 1.0)
    skin = subject.skin_temperature - 1.2 * face
    deltas = np.asarray(subject.regional_offsets) + params.thermal_intensity * np.asarray(_THERMAL_DELTAS[label])
    # Python floats, not numpy float64 scalars: they keep the float32 arithmetic of the maps (the files depend on it).
    deltas = deltas.tolist()
    for region, blob in _thermal_blobs(subject):
        skin = skin + deltas[_THERMAL_REGIONS.index(region)] * canvas.gaussian(*blob)
    temperature = ambient + face_weight * (skin - ambient)
    hair = _hair(canvas, subject)
    # Hair insulates: it reads a few degrees above ambient, far below skin.
    temperature = np.where(hair, ambient + 4.0, temperature)
    temperature = temperature + rng.standard_normal((size, size), dtype=np.float32) * params.thermal_noise
    temperature = temperature + rng.standard_normal((1, size), dtype=np.float32) * 0.05
    return temperature.astype(np.float32)


def evidence_masks(label: str, params: SampleParams, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """
    Where the evidence for `label` lies in each modality of the pair `render_pair(label, params, image_size)`: the
    ground truth against which explanation maps are scored.

    - RGB: the painted brows, eyes (sclera and iris) and mouth (lips and mouth opening), the features whose shape the
      expression sets. Every label has RGB evidence (neutral is told by its features at rest).
    - Thermal: the regions whose temperature the label changes (`_THERMAL_DELTAS`: forehead, periorbital, nose tip,
      cheeks), each where its Gaussian is at least half its peak (full width at half maximum), on skin only.
      Empty for happy, neutral and sad, which leave the face at its baseline temperature.

    Returns:
        `(rgb_mask, thermal_mask)`: boolean arrays of shape `(image_size, image_size)`.
    """
    if label not in _THERMAL_DELTAS:
        raise ValueError(f"`label` must be one of {FER_LABELS}, got {label!r}.")
    canvas = _Canvas(image_size, params)
    regions = _paint_regions(canvas, label, params)
    rgb = np.isin(regions, [_RGB_REGIONS.index(region) for region in _RGB_EVIDENCE_REGIONS])
    changed = {region for region, delta in zip(_THERMAL_REGIONS, _THERMAL_DELTAS[label], strict=True) if delta != 0}
    skin = (canvas.ellipse(0.0, 0.0, canvas.aspect, 1.0) < 1) & ~_hair(canvas, params.subject)
    thermal = np.zeros((image_size, image_size), dtype=bool)
    for region, blob in _thermal_blobs(params.subject):
        if region in changed:
            thermal |= canvas.gaussian(*blob) >= 0.5
    return rgb, thermal & skin


def render_pair(label: str, params: SampleParams, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """
    Renders one registered pair.

    Args:
        label (`str`): One of `FER_LABELS`.
        params (`SampleParams`): Subject, pose, lighting and noise of the capture.
        image_size (`int`): Side of the square images in pixels.

    Returns:
        `(rgb, temperature)`: a `uint8` array of shape `(image_size, image_size, 3)` and a `float32` array of shape
        `(image_size, image_size)` in °C.
    """
    if label not in _THERMAL_DELTAS:
        raise ValueError(f"`label` must be one of {FER_LABELS}, got {label!r}.")
    if image_size < 8:
        raise ValueError(f"`image_size` must be at least 8 pixels, got {image_size}.")
    canvas = _Canvas(image_size, params)
    rng = np.random.default_rng(params.noise_seed)
    return _render_rgb(canvas, label, params, rng), _render_thermal(canvas, label, params, rng)


def temperature_to_counts(temperature: np.ndarray) -> np.ndarray:
    """°C → 16-bit centi-kelvin radiometric counts (the processor's default decoding inverts it)."""
    return np.round((temperature + KELVIN_OFFSET) * 100.0).astype(np.uint16)


def plan_samples(num_samples: int, seed: int, num_subjects: int) -> list[tuple[str, int, SampleParams]]:
    """
    Draws the labels, subjects and capture parameters of a benchmark: balanced labels, each subject showing a mix
    of expressions.

    Returns:
        A list of `(label, subject_index, params)`, one per sample.
    """
    if num_samples < 1:
        raise ValueError(f"`num_samples` must be at least 1, got {num_samples}.")
    if not 1 <= num_subjects <= num_samples:
        raise ValueError(f"`num_subjects` must be between 1 and num_samples ({num_samples}), got {num_subjects}.")
    order = np.random.default_rng([seed, 0])
    labels = order.permutation(np.arange(num_samples) % len(FER_LABELS))
    subjects = order.permutation(np.arange(num_samples) % num_subjects)
    identities = [SubjectParams.draw(np.random.default_rng([seed, 1, s])) for s in range(num_subjects)]
    return [
        (
            FER_LABELS[int(label)],
            int(subject),
            SampleParams.draw(np.random.default_rng([seed, 2, index]), identities[int(subject)]),
        )
        for index, (label, subject) in enumerate(zip(labels, subjects, strict=True))
    ]


def synthesize_dataset(
    output_dir: str | os.PathLike,
    num_samples: int = 2000,
    seed: int = 0,
    image_size: int = 224,
    num_subjects: int | None = None,
    progress: bool = True,
) -> Path:
    """
    Writes the synthetic RGB + thermal benchmark in the folder layout `load_fer_dataset` reads, plus a manifest.
    The files are written to `<output_dir>.partial` and the folder is renamed when complete, so an interrupted run
    never leaves half a dataset under `output_dir`.

    Files: `rgb/<label>/<name>.jpg` (8-bit RGB), `thermal/<label>/<name>.png` (16-bit centi-kelvin counts),
    `evidence_masks/{rgb,thermal}/<label>/<name>.png` (where the evidence for the label lies in each modality, see
    [`evidence_masks`]; all black where a modality carries none), `manifest.csv` (columns `rgb`, `thermal`, `label`,
    `subject`, `rgb_mask`, `thermal_mask`; paths relative to `output_dir`) and `synthetic.json` (the generator
    settings).

    Args:
        output_dir (`str` or `os.PathLike`): Folder to write; must be empty or absent.
        num_samples (`int`, *optional*, defaults to 2000): Number of pairs.
        seed (`int`, *optional*, defaults to 0): Seed of every random draw.
        image_size (`int`, *optional*, defaults to 224): Side of the square images in pixels.
        num_subjects (`int`, *optional*): Number of distinct people; defaults to one per 50 samples (at least 1).
        progress (`bool`, *optional*, defaults to `True`): Show a progress bar.

    Returns:
        `Path` of `output_dir`.
    """
    final_dir = Path(output_dir)
    if final_dir.exists() and any(final_dir.iterdir()):
        raise ValueError(f"`output_dir` must be empty or absent, {final_dir} holds files.")
    output_dir = final_dir.with_name(final_dir.name + ".partial")
    shutil.rmtree(output_dir, ignore_errors=True)  # left by an interrupted run
    num_subjects = num_subjects if num_subjects is not None else max(1, num_samples // 50)
    plan = plan_samples(num_samples, seed, num_subjects)
    for modality in ("rgb", "thermal"):
        for label in FER_LABELS:
            (output_dir / modality / label).mkdir(parents=True, exist_ok=True)
            (output_dir / MASKS_DIR / modality / label).mkdir(parents=True, exist_ok=True)

    rows = []
    for index, (label, subject, params) in enumerate(tqdm(plan, desc="Synthesizing", disable=not progress)):
        rgb, temperature = render_pair(label, params, image_size)
        name = f"s{subject:03d}_{index:05d}"
        rgb_path, thermal_path = f"rgb/{label}/{name}.jpg", f"thermal/{label}/{name}.png"
        # RGB as cameras write it (JPEG, 4:4:4 so small faces keep their colours); thermal as 16-bit radiometric
        # PNG at level 1, since its sensor noise barely compresses further and writing would dominate the time.
        PIL.Image.fromarray(rgb).save(output_dir / rgb_path, quality=95, subsampling=0)
        PIL.Image.fromarray(temperature_to_counts(temperature)).save(output_dir / thermal_path, compress_level=1)
        row = {"rgb": rgb_path, "thermal": thermal_path, "label": label, "subject": f"s{subject:03d}"}
        for modality, mask in zip(("rgb", "thermal"), evidence_masks(label, params, image_size), strict=True):
            row[f"{modality}_mask"] = f"{MASKS_DIR}/{modality}/{label}/{name}.png"
            PIL.Image.fromarray(mask.astype(np.uint8) * 255).save(output_dir / row[f"{modality}_mask"])
        rows.append(row)

    with open(output_dir / MANIFEST_NAME, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["rgb", "thermal", "label", "subject", "rgb_mask", "thermal_mask"])
        writer.writeheader()
        writer.writerows(rows)
    settings = {
        "generator": "vit_fer.synthetic",
        "num_samples": num_samples,
        "seed": seed,
        "image_size": image_size,
        "num_subjects": num_subjects,
        "thermal_encoding": "uint16 centi-kelvin: counts = round((celsius + 273.15) * 100)",
        "rgb_geometry": _GEOMETRY,
        "thermal_deltas_celsius": {label: _THERMAL_DELTAS[label] for label in FER_LABELS},
    }
    (output_dir / "synthetic.json").write_text(json.dumps(settings, indent=2) + "\n")
    if final_dir.exists():
        final_dir.rmdir()
    output_dir.rename(final_dir)
    return final_dir


def synthetic_benchmark(
    root: str | os.PathLike, num_samples: int = 2000, seed: int = 0, image_size: int = 224
) -> Path:
    """The synthetic benchmark for (`num_samples`, `seed`, `image_size`) under `root`, generated on first use.

    Exactly one process generates it however training was launched — a single process, the ranks of torchrun or
    `accelerate launch`, or separate runs started together: the check and the generation happen under a file lock
    beside the folder, so the others wait for it instead of writing the same `.partial` folder.
    """
    folder = Path(root) / f"synthetic-fer-{num_samples}-{image_size}px-seed{seed}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not folder.exists():
            synthesize_dataset(folder, num_samples=num_samples, seed=seed, image_size=image_size)
    return folder
