"""Synthetic chest radiographs with findings tied to labels.

A :class:`Chest` is built as density layers (larger = denser = brighter on a MONOCHROME2 display):
body soft tissue, bones (spine, ribs, clavicles), air in the lung fields (real lung outlines from
:func:`benchmark.data.demo.sources.lung_masks`), the heart and mediastinum, and lung markings.
Findings edit those layers (a bigger heart, basal fluid, a box of consolidation, an air pocket
without markings, a bright wire); :meth:`Chest.render` composes them, adds noise and a random
exposure, and quantises to uint8. Every random choice comes from the ``rng`` passed in, so one
seed gives one image.

Finding strengths are chosen so that a linear model on downsampled pixels separates positives
from negatives clearly (see tests/data/test_demo.py); they are not meant to be subtle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from benchmark.data.demo.sources import lung_masks
from benchmark.registry import Registry

LUNG_AIR = 0.34  # density removed inside aerated lung
SOFT_TISSUE = 0.50  # density of the body outline
METAL = 0.65  # density added by foreign objects and devices


def soft_ellipse(shape: tuple[int, int], center: tuple[float, float], axes: tuple[float, float],
                 angle: float = 0.0, blur: float = 0.0) -> np.ndarray:
    """float32 mask of a filled ellipse, optionally with a Gaussian edge of ``blur`` pixels."""
    mask = np.zeros(shape, np.float32)
    cv2.ellipse(mask, (round(center[0]), round(center[1])), (max(1, round(axes[0])), max(1, round(axes[1]))),
                angle, 0, 360, 1.0, -1, cv2.LINE_AA)
    return smooth(mask, blur)


def smooth(layer: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide blurs run on a downsampled copy (same look, a fraction of the time)."""
    if sigma <= 0.3:
        return layer
    factor = int(sigma // 3)
    if factor < 2:
        return cv2.GaussianBlur(layer, (0, 0), sigma)
    height, width = layer.shape
    small = cv2.resize(layer, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / factor), (width, height), interpolation=cv2.INTER_LINEAR)


def texture(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth random field scaled to unit standard deviation (lung markings, fluffy opacities),
    drawn on a grid coarse enough for its smoothness and interpolated up."""
    factor = max(1, int(sigma // 2))
    height, width = shape
    coarse = (max(2, -(-height // factor)), max(2, -(-width // factor)))
    field_ = cv2.GaussianBlur(rng.standard_normal(coarse, dtype=np.float32), (0, 0), sigma / factor)
    field_ = cv2.resize(field_, (width, height), interpolation=cv2.INTER_LINEAR)
    return field_ / (field_.std() + 1e-6)


@dataclass
class Chest:
    """A radiograph under construction; findings edit the layers, :meth:`render` composes them."""

    rng: np.random.Generator
    height: int
    width: int
    body: np.ndarray
    bones: np.ndarray
    lungs: np.ndarray  # soft mask of both lung fields
    right_lung: np.ndarray  # the patient's right lung (left side of the image)
    left_lung: np.ndarray
    lung_box: tuple[float, float, float, float]  # x0, y0, x1, y1 of the lung fields
    heart_center: tuple[float, float]
    heart_axes: tuple[float, float]
    mediastinum_width: float
    markings: np.ndarray
    extra: np.ndarray = field(init=False)  # density added by findings
    air: np.ndarray = field(init=False)  # extra air (pneumothorax): removes density and markings
    heart_scale: float = 1.0
    mediastinum_scale: float = 1.0

    def __post_init__(self) -> None:
        self.extra = np.zeros(self.shape, np.float32)
        self.air = np.zeros(self.shape, np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def scale(self) -> float:
        return min(self.height, self.width)

    def lung(self, side: str) -> np.ndarray:
        return {"right": self.right_lung, "left": self.left_lung}[side]

    def sides(self) -> tuple[str, ...]:
        """Lungs present: both on a frontal view, one field on a lateral view."""
        return ("right", "left") if self.left_lung.any() else ("right",)

    def random_side(self) -> str:
        sides = self.sides()
        return sides[int(self.rng.integers(len(sides)))]

    def point_in(self, region: np.ndarray, margin: float = 0.0) -> tuple[float, float]:
        """A random (x, y) inside ``region`` (> 0.5), away from its edge by about ``margin`` pixels."""
        inner = region > 0.5
        if not inner.any():  # a finding placed in an empty zone (e.g. a tiny lung base) falls back to the lungs
            inner = self.lungs > 0.5
        if margin > 0:
            eroded = cv2.erode(inner.astype(np.uint8), np.ones((2 * int(margin) + 1,) * 2, np.uint8)) > 0
            inner = eroded if eroded.any() else inner
        ys, xs = np.nonzero(inner)
        pick = int(self.rng.integers(len(ys)))
        return float(xs[pick]), float(ys[pick])

    def heart(self) -> np.ndarray:
        (cx, cy), (ax, ay) = self.heart_center, self.heart_axes
        return soft_ellipse(self.shape, (cx, cy), (ax * self.heart_scale, ay * (0.5 + 0.5 * self.heart_scale)),
                            -15, self.scale / 80)

    def mediastinum(self) -> np.ndarray:
        x_center = (self.lung_box[0] + self.lung_box[2]) / 2
        half = self.mediastinum_width * self.mediastinum_scale / 2
        band = np.zeros(self.shape, np.float32)
        cv2.rectangle(band, (round(x_center - half), 0), (round(x_center + half), round(self.heart_center[1])), 1.0, -1)
        return smooth(band, self.scale / 60)

    def aerated(self) -> np.ndarray:
        """Lung fields not hidden by the heart or mediastinum: where lung findings show."""
        return self.lungs * (1 - np.maximum(self.heart(), self.mediastinum()))

    def render(self) -> np.ndarray:
        """uint8 [H, W] image: composed layers, blur, noise, random exposure and gamma."""
        rng = self.rng
        aerated = self.aerated()
        no_markings = np.clip(self.air * 4, 0, 1)
        density = (SOFT_TISSUE * self.body + self.bones - LUNG_AIR * aerated
                   + 0.05 * self.markings * aerated * (1 - no_markings) - self.air * aerated.clip(0.5, 1) + self.extra)
        density = smooth(density, self.scale / 256)
        density += 0.015 * rng.standard_normal(self.shape, dtype=np.float32)
        gain, offset, gamma = rng.uniform(0.85, 1.15), rng.uniform(-0.04, 0.06), rng.uniform(0.85, 1.2)
        image = np.clip(density * gain + offset + 0.12, 0, 1) ** gamma
        return np.round(image * 255).astype(np.uint8)


def _ribs(shape: tuple[int, int], box: tuple[float, float, float, float], rng: np.random.Generator) -> np.ndarray:
    """Posterior rib arcs on both sides plus clavicles, as a blurred bone layer."""
    height, width = shape
    x0, y0, x1, y1 = box
    center = (x0 + x1) / 2
    layer = np.zeros(shape, np.float32)
    thickness = max(1, round(min(shape) / 55))
    t = np.linspace(0, 1, 24)
    for index in range(10):
        y_start = y0 + (index + 0.3) * (y1 - y0) / 10.5
        for direction in (-1, 1):
            lateral = (x1 - x0) / 2 * 1.05
            xs = center + direction * (0.04 * width + lateral * t)
            ys = y_start - 0.05 * height * np.sin(np.pi * t * 0.8) + 0.06 * height * t + rng.normal(0, 0.003 * height)
            points = np.stack([xs, ys], 1).round().astype(np.int32)
            cv2.polylines(layer, [points], False, 1.0, thickness, cv2.LINE_AA)
    for direction in (-1, 1):  # clavicles
        start = (round(center + direction * 0.05 * width), round(y0 + 0.03 * height))
        end = (round(center + direction * 0.36 * width), round(y0 - 0.04 * height))
        cv2.line(layer, start, end, 1.0, thickness + 2, cv2.LINE_AA)
    return smooth(layer, min(shape) / 200) * 0.09


def new_chest(rng: np.random.Generator, height: int, width: int | None = None,
              anatomy: np.random.Generator | None = None) -> Chest:
    """A normal frontal chest: real lung outline, heart, mediastinum, ribs, spine, body outline.

    ``anatomy`` draws the patient's build (pass a generator seeded per patient so that all images
    of a patient look alike); ``rng`` draws everything that changes between images.
    """
    width = width or height
    build = anatomy if anatomy is not None else rng
    shape = (height, width)
    scale = min(shape)
    bank = lung_masks()
    box = (width * build.uniform(0.11, 0.17), height * build.uniform(0.08, 0.14),
           width * build.uniform(0.83, 0.89), height * build.uniform(0.76, 0.84))
    x0, y0, x1, y1 = (round(v) for v in box)
    lung_crop = cv2.resize(bank[int(build.integers(len(bank)))], (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    lungs = np.zeros(shape, np.float32)
    lungs[y0:y1, x0:x1] = lung_crop
    lungs = smooth(lungs, scale / 150)
    center = (x0 + x1) / 2
    right_lung, left_lung = lungs.copy(), lungs.copy()
    right_lung[:, round(center):] = 0
    left_lung[:, : round(center)] = 0

    body = soft_ellipse(shape, (width / 2, height * 0.58), (width * build.uniform(0.44, 0.5), height * 0.62), 0, scale / 40)
    shoulders = np.zeros(shape, np.float32)
    cv2.rectangle(shoulders, (round(width * 0.03), 0), (round(width * 0.97), round(height * 0.45)), 1.0, -1)
    body = np.maximum(body, smooth(shoulders, scale / 30))

    spine = np.zeros(shape, np.float32)
    cv2.rectangle(spine, (round(center - 0.035 * width), 0), (round(center + 0.035 * width), height), 1.0, -1)
    bones = _ribs(shape, box, build) + 0.10 * smooth(spine, scale / 100)

    markings = 0.6 * texture(build, shape, scale / 80) + 0.4 * texture(build, shape, scale / 200)
    return Chest(
        rng=rng, height=height, width=width, body=body, bones=bones, lungs=lungs, right_lung=right_lung,
        left_lung=left_lung, lung_box=(x0, y0, x1, y1),
        heart_center=(center + width * build.uniform(0.03, 0.07), y0 + (y1 - y0) * build.uniform(0.72, 0.8)),
        heart_axes=(width * build.uniform(0.13, 0.16), height * build.uniform(0.1, 0.12)),
        mediastinum_width=width * build.uniform(0.11, 0.14), markings=markings,
    )


def new_lateral(rng: np.random.Generator, height: int, width: int | None = None,
                anatomy: np.random.Generator | None = None) -> Chest:
    """A lateral view: one lung field (a real lung outline), spine behind, heart in front."""
    width = width or height
    build = anatomy if anatomy is not None else rng
    shape = (height, width)
    scale = min(shape)
    bank = lung_masks()
    half = bank[int(build.integers(len(bank)))][:, : bank.shape[2] // 2]
    x0, y0, x1, y1 = round(width * 0.2), round(height * 0.12), round(width * 0.78), round(height * 0.82)
    lungs = np.zeros(shape, np.float32)
    lungs[y0:y1, x0:x1] = cv2.resize(half, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    lungs = smooth(lungs, scale / 150)
    body = soft_ellipse(shape, (width * 0.5, height * 0.55), (width * 0.42, height * 0.62), 0, scale / 40)
    spine = np.zeros(shape, np.float32)
    cv2.rectangle(spine, (round(width * 0.78), 0), (round(width * 0.88), height), 1.0, -1)
    empty = np.zeros(shape, np.float32)
    return Chest(
        rng=rng, height=height, width=width, body=body, bones=0.12 * smooth(spine, scale / 100), lungs=lungs,
        right_lung=lungs, left_lung=empty, lung_box=(x0, y0, x1, y1),
        heart_center=(width * 0.35, height * 0.66), heart_axes=(width * 0.14, height * 0.13),
        mediastinum_width=0.0, markings=texture(build, shape, scale / 80),
    )


# ----------------------------------------------------------------------------------------------
# Findings: each edits a Chest; ``strength`` is 1 for a positive label, about 0.5 for an uncertain one.

Finding = Callable[[Chest, float], None]
FINDINGS: Registry[Finding] = Registry("demo finding")


def add_opacity(chest: Chest, region: np.ndarray, amount: float, fluffy: bool = True) -> None:
    """Add density in ``region`` (soft mask), modulated by a smooth texture when ``fluffy``."""
    if fluffy:
        region = region * np.clip(0.75 + 0.3 * texture(chest.rng, chest.shape, chest.scale / 40), 0.3, 1.2)
    chest.extra += amount * region


def _blob_in(chest: Chest, region: np.ndarray, size: float) -> np.ndarray:
    x, y = chest.point_in(region, margin=size / 2)
    axes = (size * chest.rng.uniform(0.8, 1.2), size * chest.rng.uniform(0.7, 1.1))
    return soft_ellipse(chest.shape, (x, y), axes, chest.rng.uniform(0, 180), size / 3)


def _lower(chest: Chest, fraction: float) -> np.ndarray:
    """Rows below ``fraction`` of the lung height (0 at the apex, 1 at the bases), as a soft weight."""
    _, y0, _, y1 = chest.lung_box
    rows = (np.arange(chest.height, dtype=np.float32) - y0) / max(1.0, y1 - y0)
    return np.clip((rows - fraction) * 8, 0, 1)[:, None] * np.ones((1, chest.width), np.float32)


@FINDINGS.register("cardiomegaly")
def cardiomegaly(chest: Chest, strength: float) -> None:
    chest.heart_scale = 1 + 0.45 * strength


@FINDINGS.register("enlarged_cardiomediastinum")
def enlarged_cardiomediastinum(chest: Chest, strength: float) -> None:
    chest.mediastinum_scale = 1 + 0.8 * strength
    chest.heart_scale = max(chest.heart_scale, 1 + 0.15 * strength)


@FINDINGS.register("lung_opacity")
def lung_opacity(chest: Chest, strength: float) -> None:
    for _ in range(int(chest.rng.integers(1, 4))):
        add_opacity(chest, _blob_in(chest, chest.lungs, chest.scale * chest.rng.uniform(0.06, 0.1)) * chest.aerated(), 0.25 * strength)


@FINDINGS.register("lung_lesion")
def lung_lesion(chest: Chest, strength: float) -> None:
    nodule = _blob_in(chest, chest.lungs, chest.scale * chest.rng.uniform(0.025, 0.045))
    add_opacity(chest, nodule, 0.45 * strength, fluffy=False)


@FINDINGS.register("edema")
def edema(chest: Chest, strength: float) -> None:
    """Bilateral perihilar haze, denser centrally and towards the bases."""
    x0, y0, x1, y1 = chest.lung_box
    haze = np.zeros(chest.shape, np.float32)
    for hilum_x in (x0 + 0.32 * (x1 - x0), x0 + 0.68 * (x1 - x0)):
        haze += soft_ellipse(chest.shape, (hilum_x, y0 + 0.55 * (y1 - y0)), (0.22 * (x1 - x0), 0.35 * (y1 - y0)), 0, chest.scale / 12)
    add_opacity(chest, np.clip(haze, 0, 1) * chest.aerated(), 0.2 * strength)


@FINDINGS.register("consolidation")
def consolidation(chest: Chest, strength: float) -> None:
    """A dense lobar opacity in the lower half of one lung."""
    lung = chest.lung(chest.random_side()) * _lower(chest, 0.45)
    add_opacity(chest, _blob_in(chest, lung, chest.scale * 0.12) * chest.aerated(), 0.35 * strength)


@FINDINGS.register("pneumonia")
def pneumonia(chest: Chest, strength: float) -> None:
    """A fluffy focal opacity anywhere in one lung."""
    lung = chest.lung(chest.random_side())
    add_opacity(chest, _blob_in(chest, lung, chest.scale * chest.rng.uniform(0.08, 0.12)) * chest.aerated(), 0.3 * strength)


@FINDINGS.register("atelectasis")
def atelectasis(chest: Chest, strength: float) -> None:
    """A plate-like band in a lower zone plus volume loss (a denser base)."""
    lung = chest.lung(chest.random_side())
    x, y = chest.point_in(lung * _lower(chest, 0.55))
    band = soft_ellipse(chest.shape, (x, y), (chest.scale * 0.14, chest.scale * 0.025), chest.rng.uniform(-15, 15), chest.scale / 100)
    add_opacity(chest, band * chest.aerated(), 0.45 * strength, fluffy=False)
    add_opacity(chest, chest.aerated() * (lung > 0.01) * _lower(chest, 0.75), 0.3 * strength, fluffy=False)


@FINDINGS.register("pleural_effusion")
def pleural_effusion(chest: Chest, strength: float) -> None:
    """Basal fluid with a meniscus rising laterally: the costophrenic angle is blunted."""
    x0, y0, x1, y1 = chest.lung_box
    sides = chest.sides() if chest.rng.random() < 0.4 else (chest.random_side(),)
    columns = np.arange(chest.width, dtype=np.float32)
    rows = np.arange(chest.height, dtype=np.float32)[:, None]
    for side in sides:
        level = y1 - (y1 - y0) * chest.rng.uniform(0.18, 0.3)
        lateral = (columns - x0) if side == "right" else (x1 - columns)
        meniscus = level + 0.15 * (y1 - y0) * np.clip(lateral / ((x1 - x0) / 2), 0, 1)  # higher at the chest wall
        fluid = smooth((rows > meniscus[None, :]).astype(np.float32), chest.scale / 80)
        add_opacity(chest, fluid * chest.aerated() * (chest.lung(side) > 0.01), LUNG_AIR * strength, fluffy=False)


@FINDINGS.register("pleural_other")
def pleural_other(chest: Chest, strength: float) -> None:
    """Pleural thickening along the lateral chest wall of one lung."""
    lung = chest.lung(chest.random_side())
    inner = cv2.erode((lung > 0.5).astype(np.uint8), np.ones((max(3, chest.scale // 25),) * 2, np.uint8))
    rim = smooth(np.clip((lung > 0.5).astype(np.float32) - inner, 0, 1), chest.scale / 150)
    add_opacity(chest, rim * (1 - _lower(chest, 0.9)), 0.25 * strength, fluffy=False)


@FINDINGS.register("fracture")
def fracture(chest: Chest, strength: float) -> None:
    """A rib fracture: a dense callus where a lateral rib crosses the lung edge."""
    x, y = chest.point_in(chest.lungs * (1 - _lower(chest, 0.8)))
    x0, _, x1, _ = chest.lung_box
    x = x0 + 0.08 * (x1 - x0) if x < (x0 + x1) / 2 else x1 - 0.08 * (x1 - x0)  # the lateral chest wall of that side
    add_opacity(chest, soft_ellipse(chest.shape, (x, y), (chest.scale * 0.03, chest.scale * 0.02), 30, 1.5), 0.4 * strength, fluffy=False)


@FINDINGS.register("support_devices")
def support_devices(chest: Chest, strength: float) -> None:
    """An endotracheal/enteric tube down the midline, sometimes a central line and a pacemaker."""
    x0, y0, x1, y1 = chest.lung_box
    center = (x0 + x1) / 2
    wire = np.zeros(chest.shape, np.float32)
    thickness = max(1, round(chest.scale / 90))
    tube_end = y0 + (y1 - y0) * chest.rng.uniform(0.2, 1.1)
    cv2.line(wire, (round(center), 0), (round(center + chest.rng.normal(0, 2)), round(tube_end)), 1.0, thickness, cv2.LINE_AA)
    if chest.rng.random() < 0.6:  # a central venous line from the subclavian region
        start = (round(x0 + chest.rng.uniform(0, 0.2) * (x1 - x0)), round(y0))
        end = (round(center - 0.03 * chest.width), round(y0 + 0.35 * (y1 - y0)))
        cv2.line(wire, start, end, 1.0, thickness, cv2.LINE_AA)
    if chest.rng.random() < 0.35:  # a pacemaker generator
        corner = (round(x1 - 0.25 * (x1 - x0)), round(y0 + 0.02 * chest.height))
        cv2.rectangle(wire, corner, (corner[0] + round(0.09 * chest.width), corner[1] + round(0.06 * chest.height)), 1.0, -1)
    chest.extra += METAL * strength * wire


@FINDINGS.register("pneumothorax")
def pneumothorax(chest: Chest, strength: float) -> None:
    """An apical-lateral crescent of air in one lung (see :func:`add_pneumothorax` for given masks)."""
    lung = chest.lung(chest.random_side())
    collapsed = cv2.erode((lung > 0.5).astype(np.uint8), np.ones((max(3, chest.scale // 12),) * 2, np.uint8))
    pocket = np.clip((lung > 0.5).astype(np.float32) - collapsed, 0, 1) * (1 - _lower(chest, 0.55))
    add_pneumothorax(chest, pocket, strength)


@FINDINGS.register("covid_ground_glass")
def covid_ground_glass(chest: Chest, strength: float) -> None:
    """Bilateral, peripheral, lower-zone predominant ground-glass opacities (COVID-19 pattern)."""
    x0, _, x1, _ = chest.lung_box
    columns = np.arange(chest.width, dtype=np.float32)
    peripheral = np.clip(np.abs(columns - (x0 + x1) / 2) / ((x1 - x0) / 2) * 1.6 - 0.5, 0, 1)[None, :]
    lower = 0.4 + 0.6 * _lower(chest, 0.4)
    add_opacity(chest, chest.aerated() * peripheral * lower, 0.28 * strength)


CHEXPERT_FINDINGS = {  # CheXpert/MIMIC label column → finding drawn for it ("No Finding" draws nothing)
    "Enlarged Cardiomediastinum": "enlarged_cardiomediastinum",
    "Cardiomegaly": "cardiomegaly",
    "Lung Opacity": "lung_opacity",
    "Lung Lesion": "lung_lesion",
    "Edema": "edema",
    "Consolidation": "consolidation",
    "Pneumonia": "pneumonia",
    "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "pleural_effusion",
    "Pleural Other": "pleural_other",
    "Fracture": "fracture",
    "Support Devices": "support_devices",
}
LABEL_STRENGTH = {"1.0": 1.0, "-1.0": 0.5}  # CheXpert label cell → strength (empty and 0.0 draw nothing)
ANATOMY_FIRST = ("cardiomegaly", "enlarged_cardiomediastinum")  # they move the heart, which lung findings avoid


def apply_findings(chest: Chest, strengths: dict[str, float]) -> None:
    """Draw every finding with a positive strength; heart-size changes first."""
    order = sorted(strengths, key=lambda name: (name not in ANATOMY_FIRST, name))
    for name in order:
        if strengths[name] > 0:
            FINDINGS.get(name)(chest, strengths[name])


def chexpert_strengths(cells: dict[str, str]) -> dict[str, float]:
    """Finding strengths from CheXpert-style label cells (``"1.0"``, ``"-1.0"``, ``"0.0"`` or empty)."""
    return {finding: LABEL_STRENGTH.get(cells.get(column, ""), 0.0) for column, finding in CHEXPERT_FINDINGS.items()}


def add_pneumothorax(chest: Chest, mask: np.ndarray, strength: float = 1.0) -> None:
    """Air without lung markings where ``mask`` is set, with a thin visceral pleural line at its edge.

    A given mask (SIIM) comes from another patient's geometry and may reach past this chest's lung
    outline; the pleural space it marks then joins the lung field, so the pocket reads as air, not
    as a hole in soft tissue."""
    mask = mask.astype(np.float32)
    chest.lungs = np.maximum(chest.lungs, smooth(mask, 0.8))
    chest.air = np.maximum(chest.air, 0.25 * strength * smooth(mask, 0.8))
    edge = cv2.morphologyEx((mask > 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(np.float32)
    chest.extra += 0.1 * strength * edge


def add_box_opacity(chest: Chest, box: tuple[float, float, float, float], strength: float = 1.0) -> None:
    """Airspace opacity filling an (x1, y1, x2, y2) box, with soft edges kept inside the box."""
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    inner = soft_ellipse(chest.shape, ((x1 + x2) / 2, (y1 + y2) / 2), (width * 0.42, height * 0.42), 0, min(width, height) / 8)
    add_opacity(chest, inner * (0.3 + 0.7 * chest.aerated()), 0.32 * strength)  # mostly where the box covers lung


# ----------------------------------------------------------------------------------------------
# Foreign objects (Object-CXR): each draws metal into the chest and returns its annotation.

ObjectDrawer = Callable[[Chest], str]
FOREIGN_OBJECTS: Registry[ObjectDrawer] = Registry("demo foreign object")


def _object_center(chest: Chest) -> tuple[float, float]:
    x0, y0, x1, y1 = chest.lung_box
    return chest.rng.uniform(x0, x1), chest.rng.uniform(y0, y1)


@FOREIGN_OBJECTS.register("clip")
def clip(chest: Chest) -> str:
    """A rectangular clip or snap (annotation type 0, two corners)."""
    x, y = _object_center(chest)
    half_w, half_h = chest.scale * chest.rng.uniform(0.02, 0.05), chest.scale * chest.rng.uniform(0.02, 0.05)
    x1, y1 = max(0, round(x - half_w)), max(0, round(y - half_h))
    x2, y2 = min(chest.width - 1, round(x + half_w)), min(chest.height - 1, round(y + half_h))
    metal = np.zeros(chest.shape, np.float32)
    cv2.rectangle(metal, (x1, y1), (x2, y2), 1.0, -1)
    cv2.rectangle(metal, (x1 + 2, y1 + 2), (x2 - 2, y2 - 2), 0.6, -1)
    chest.extra += METAL * metal
    return f"0 {x1} {y1} {x2} {y2}"


@FOREIGN_OBJECTS.register("button")
def button(chest: Chest) -> str:
    """A round button with holes (annotation type 1, the two corners of its bounding box)."""
    x, y = _object_center(chest)
    radius = chest.scale * chest.rng.uniform(0.025, 0.045)
    x1, y1 = max(0, round(x - radius)), max(0, round(y - radius))
    x2, y2 = min(chest.width - 1, round(x + radius)), min(chest.height - 1, round(y + radius))
    metal = soft_ellipse(chest.shape, ((x1 + x2) / 2, (y1 + y2) / 2), ((x2 - x1) / 2, (y2 - y1) / 2))
    for dx in (-0.3, 0.3):
        hole = soft_ellipse(chest.shape, ((x1 + x2) / 2 + dx * (x2 - x1), (y1 + y2) / 2), (max(1.0, (x2 - x1) / 10),) * 2)
        metal -= 0.7 * hole
    chest.extra += METAL * np.clip(metal, 0, 1)
    return f"1 {x1} {y1} {x2} {y2}"


@FOREIGN_OBJECTS.register("wire")
def wire(chest: Chest) -> str:
    """A curved wire or necklace; its annotation is the polygon outlining it (type 2)."""
    x, y = _object_center(chest)
    t = np.linspace(0, 1, 16)
    length, bend = chest.scale * chest.rng.uniform(0.25, 0.45), chest.scale * chest.rng.uniform(-0.08, 0.08)
    angle = chest.rng.uniform(0, np.pi)
    along, across = (t - 0.5) * length, bend * np.sin(np.pi * t)
    xs = np.clip(x + along * np.cos(angle) - across * np.sin(angle), 1, chest.width - 2)
    ys = np.clip(y + along * np.sin(angle) + across * np.cos(angle), 1, chest.height - 2)
    drawn = np.zeros(chest.shape, np.uint8)
    cv2.polylines(drawn, [np.stack([xs, ys], 1).round().astype(np.int32)], False, 1, max(2, round(chest.scale / 60)))
    contours, _ = cv2.findContours(drawn, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contour = max(contours, key=cv2.contourArea)
    outline = cv2.approxPolyDP(contour, 1.0, True).reshape(-1, 2)
    if len(outline) < 3:  # a short straight wire at a small size: outline it by its rotated rectangle
        outline = cv2.boxPoints(cv2.minAreaRect(contour)).round().astype(int)
        outline = np.clip(outline, 0, [chest.width - 1, chest.height - 1])
    chest.extra += METAL * drawn.astype(np.float32)
    return "2 " + " ".join(f"{px} {py}" for px, py in outline)
