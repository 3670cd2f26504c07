"""Worst-case inputs: the witness next to the original.

witness_ref = "<path of an .npz relative to witnesses_root>#<key>"; the npz holds flat float64
rows "<key>/x0" and "<key>/witness" (the format, saving and loading: `saferisk.witness_file`).
For invariance "<key>/x0" is the differently labelled reference input the witness lies near
(extra.reference_id names it). Inputs whose manifest `input_shape` is an image (C, H, W) with
C in {1, 3}, or (H, W), are shown as PNG images (original, witness) and a heatmap of the change
with its colour scale (SVG); others as a table of the features that changed most.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from PIL import Image

from saferisk.report.plots import difference_figure
from saferisk.witness_file import load_witness

MAX_FEATURE_ROWS = 10
IMAGE_DISPLAY_PX = 112


@dataclass
class WitnessView:
    input_id: str
    input_set: str
    radius_upper: float | None
    radius_lower: float | None
    radius_estimate: float | None
    kind: str  # 'image' | 'table' | 'unavailable'
    note: str = ""
    original_png: str = ""
    witness_png: str = ""
    difference_svg: str = ""  # heatmap of the change with a colour bar in input units
    max_abs_change: float | None = None
    features: list[dict] = field(default_factory=list)
    n_features: int = 0
    n_changed: int = 0
    relative_to_range: bool = False  # features ordered by change / domain width
    reference_id: str = ""  # invariance: the witness lies near this differently labelled input
    outcome: str = ""  # the table's outcome word for this input (audit.table.OUTCOMES)
    label: str = ""  # the input's label ('' when unlabelled)
    decision: str = ""  # the model's decision at the unchanged input ('' when none)
    outputs: list[dict] = field(default_factory=list)  # [{'name', 'x0', 'witness'}]: the model's outputs at both
    witness_decision: str = ""  # the class the model decides at the witness (argmax; '' for regression)
    x0_decision: str = ""  # the class it decides at the searched centre (the reference for invariance)


def image_shape(input_shape) -> tuple[int, int, int] | None:
    """(C, H, W) when the per-sample input shape is an image, else None."""
    shape = [int(s) for s in (input_shape or [])]
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 2:
        shape = [1, *shape]
    if len(shape) == 3 and shape[0] in (1, 3) and min(shape[1:]) >= 4:
        return tuple(shape)
    if len(shape) == 3 and shape[2] in (1, 3) and min(shape[:2]) >= 4:  # (H, W, C)
        return None if shape[0] in (1, 3) else (shape[2], shape[0], shape[1])
    return None


def display_shape(manifest: dict, n: int) -> tuple[int, int, int] | None:
    """(C, H, W) to show an input of n values as an image: the manifest's input_shape when it
    is an image, else its optional 'image_shape', else (1, s, s) for a flat input of s*s >= 64
    values in a [0, 1] domain (e.g. flattened greyscale digits); None for tabular inputs."""
    for candidate in (manifest.get("input_shape"), manifest.get("image_shape")):
        shape = image_shape(candidate)
        if shape is not None and int(np.prod(shape)) == n:
            return shape
    side = int(round(n ** 0.5))
    domain = manifest.get("domain") or {}
    bounds = [domain.get("lower"), domain.get("upper")] if isinstance(domain, dict) else list(domain or [])
    flat = [v for b in bounds for v in (b if isinstance(b, list) else [b])]
    unit_box = bool(flat) and all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in flat)
    if side * side == n and n >= 64 and unit_box:
        return (1, side, side)
    return None


def domain_width(manifest: dict, n: int) -> np.ndarray | None:
    """Per-feature domain width (upper - lower) from the manifest's domain, None if unknown."""
    domain = manifest.get("domain")
    if not isinstance(domain, dict) or domain.get("lower") is None or domain.get("upper") is None:
        return None
    try:
        lower = np.broadcast_to(np.asarray(domain["lower"], dtype=float), (n,))
        upper = np.broadcast_to(np.asarray(domain["upper"], dtype=float), (n,))
    except ValueError:
        return None
    width = upper - lower
    return width if np.all(width > 0) else None


def _png_uri(rgb: np.ndarray) -> str:
    image = Image.fromarray(rgb, mode="RGB")
    scale = max(1, IMAGE_DISPLAY_PX // max(image.size))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _to_rgb(chw: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scaled = np.clip((chw - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    hwc = np.repeat(scaled, 3, axis=0) if chw.shape[0] == 1 else scaled
    return (np.transpose(hwc, (1, 2, 0)) * 255).round().astype(np.uint8)


def _signed_change(diff: np.ndarray) -> np.ndarray:
    """Signed change per pixel (C, H, W) -> (H, W), summed over the channels."""
    return diff.sum(axis=0)


def witness_view(row, x0: np.ndarray, witness: np.ndarray, manifest: dict) -> WitnessView:
    """Image or feature-difference view of one witness."""
    view = _base_view(row)
    diff = witness - x0
    view.max_abs_change = float(np.abs(diff).max()) if diff.size else 0.0
    view.n_features = int(diff.size)
    view.n_changed = int((np.abs(diff) > 0).sum())
    shape = display_shape(manifest, x0.size)
    if shape is not None:
        both = np.concatenate([x0, witness])
        lo, hi = (0.0, 1.0) if both.min() >= 0 and both.max() <= 1 else (float(both.min()), float(both.max()))
        view.kind = "image"
        view.original_png = _png_uri(_to_rgb(x0.reshape(shape), lo, hi))
        view.witness_png = _png_uri(_to_rgb(witness.reshape(shape), lo, hi))
        view.difference_svg = difference_figure(_signed_change(diff.reshape(shape)), "input units")
        return view
    names = list(manifest.get("feature_names") or [])
    width = domain_width(manifest, diff.size)
    relative = np.abs(diff) / width if width is not None else np.abs(diff)
    order = np.argsort(-relative, kind="stable")[:MAX_FEATURE_ROWS]
    view.kind = "table"
    view.relative_to_range = width is not None
    view.features = [{"name": names[i] if i < len(names) else f"x[{i}]", "original": float(x0[i]),
                      "witness": float(witness[i]), "change": float(diff[i]),
                      "change_of_range": float(diff[i] / width[i]) if width is not None else None}
                     for i in order if diff[i] != 0]
    return view


def _none(value):
    return None if value is None or value != value else float(value)


def _base_view(row) -> WitnessView:
    try:
        extra = json.loads(row["extra"]) if isinstance(row["extra"], str) and row["extra"] else {}
    except json.JSONDecodeError:
        extra = {}
    reference = extra.get("reference_id") if isinstance(extra, dict) else None
    return WitnessView(input_id=str(row["input_id"]), input_set=str(row["input_set"]),
                       radius_upper=_none(row["radius_upper"]), radius_lower=_none(row["radius_lower"]),
                       radius_estimate=_none(row["radius_estimate"]), kind="unavailable",
                       reference_id="" if reference is None else str(reference),
                       outcome=str(row["outcome"]), label=_int_text(row.get("label")),
                       decision=_int_text(row.get("decision")))


def _int_text(value) -> str:
    """A nullable integer column's value as text ('' when null)."""
    return "" if value is None or value is pd.NA or value != value else str(int(value))


MAX_OUTPUTS_SHOWN = 4  # a card lists the outputs themselves up to this many (else only the decision)


def add_outputs(view: WitnessView, model, x0: np.ndarray, witness: np.ndarray, classifies: bool) -> None:
    """The model's outputs at the centre and at the witness (one deterministic CPU forward
    pass each), and for a classifier the class decided at each (the model's argmax/argmin)."""
    import torch

    x = torch.as_tensor(np.stack([x0, witness]), dtype=torch.float64).to(model.dtype)
    with torch.no_grad():
        z = model.forward_flat(x).to("cpu", torch.float64).numpy().reshape(2, -1)
    if z.shape[1] <= MAX_OUTPUTS_SHOWN:
        view.outputs = [{"name": f"output {j}", "x0": float(z[0, j]), "witness": float(z[1, j])}
                        for j in range(z.shape[1])]
    if classifies and z.shape[1] > 1:
        pick = np.argmin if getattr(model, "decision", "argmax") == "argmin" else np.argmax
        view.x0_decision, view.witness_decision = str(int(pick(z[0]))), str(int(pick(z[1])))


def worst_case_views(rows, manifest: dict, witnesses_root, count: int = 4, model=None) -> list[WitnessView]:
    """The `count` assessed inputs (not violated at x0) with the smallest witness radius, each as a WitnessView (a missing or
    unreadable witness file gives kind 'unavailable' with the reason in `note`). With `model`
    (a saferisk Model of the audited artifact) each view also holds the outputs at the
    centre and at the witness (add_outputs)."""
    found = rows.loc[rows["radius_upper"].notna() & (rows["status"] == "ok")]
    found = found.assign(_r=found["radius_upper"]).sort_values(["_r", "input_set", "input_id"], kind="mergesort")
    views = []
    for _, row in found.head(count).iterrows():
        ref = row["witness_ref"]
        if not ref:
            view = _base_view(row)
            view.note = "no witness reference recorded for this input"
        else:
            try:
                x0, witness = load_witness(witnesses_root, ref)
            except (OSError, KeyError, ValueError) as exc:
                view = _base_view(row)
                view.note = f"witness not available: {exc}"
            else:
                if x0.shape != witness.shape:
                    view = _base_view(row)
                    view.note = f"witness not available: shapes differ ({x0.size} vs {witness.size} values) in {ref}"
                else:
                    view = witness_view(row, x0, witness, manifest)
                    if model is not None:
                        add_outputs(view, model, x0, witness, str(manifest.get("output_kind") or "") != "regression")
        views.append(view)
    return views
