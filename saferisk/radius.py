"""The radius engine: one bracket per (input, property, norm).

    radius_lower  <=  r*  <=  radius_upper          (certified bound, witness)
    radius_estimate = min(d, (w(x0) - c) / L_hat)   (the paper's estimate, NOT a guarantee)

r* = sup{ r <= d : w(f(x)) > c on B_p(x0, r) ∩ D } is the maximum safe radius, d = max_radius.
radius_upper is the distance of the closest violating input found (re-checked by a fresh
forward pass; None if none within d); radius_lower comes from sound bound propagation
(saferisk.bounds) or is None with the reason in radius_lower_method.
Edge cases: w(x0) <= c -> radius 0, status `violated_at_input`; no change of w found ->
estimate = d; NaN/inf outputs -> status `failed: ...` for that input only.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from saferisk import __version__
from saferisk.data.domain import Domain
from saferisk.bounds import CertifyConfig, certify_radius
from saferisk.bounds.config import Certificate
from saferisk.errors import ConfigError, DataError
from saferisk.norms import distance as norm_distance
from saferisk.norms import parse_norm
from saferisk.properties.base import BoundProperty, Property
from saferisk.result import STATUS_VIOLATED_AT_INPUT, RadiusResult, failed_status
from saferisk.search.config import SearchConfig
from saferisk.search.lipschitz import lipschitz_search
from saferisk.search.region import Evaluator, Region
from saferisk.search.witness import ViolationTracker, locate_witness, robust
from saferisk.witness_file import WitnessStore, format_ref

log = logging.getLogger(__name__)
SCALES = ("input", "domain")


@dataclass
class Bracket:
    """Everything computed around one centre for one bound property."""

    value_at_center: float
    threshold: float = 0.0
    lipschitz_estimate: float | None = None
    radius_estimate: float | None = None
    radius_upper: float | None = None
    witness: torch.Tensor | None = None
    witness_margin: float | None = None  # c - w(witness) > witness_margin_required
    witness_margin_required: float | None = None
    witness_rechecked_by: str | None = None
    radius_lower: float | None = None
    radius_lower_method: str | None = None
    certify_seconds: float = 0.0
    certify_budget_exhausted: bool = False  # the budget cut the certification short
    certify_clock_capped: bool = False  # ... and it was the wall-clock cap (machine-dependent)
    certify_work: int = 0  # bound passes spent
    certify_memory_mb: int = 0  # certification memory the bounds kept to (MiB; 0: no bounds run)
    certify_memory_need_mb: int = 0  # ... and what the network needs (saferisk.bounds.memory)
    evaluations: int = 0
    violated_at_center: bool = False
    poll_evaluator: str = ""  # the runtime of the derivative-free polls (search.poll_evaluator)


@dataclass
class Measured:
    """The bracket around one centre of `Property.centers`: x0 itself (reference_id None) or a
    reference input (then reference_distance = its distance to x0)."""

    reference_id: str | None
    center: torch.Tensor
    bracket: Bracket
    reference_distance: float | None = None


def input_seed(seed: int, input_id: str) -> int:
    """Per-input seed: results do not depend on how inputs are sharded."""
    return (int(seed) * 1_000_003 + zlib.crc32(str(input_id).encode())) % (2**31)


def device_name(model) -> str:
    dev = torch.device(model.device)
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return dev.type


def certify(model, prop: BoundProperty, center: torch.Tensor, norm: str, radius: float, domain: Domain,
            unit: torch.Tensor | None, config, upper_hint: float | None) -> tuple[float | None, str, Certificate]:
    """(radius_lower, method or reason, the Certificate: seconds, work, budget flags) from
    saferisk.bounds. Running out of memory is a reason; any other exception is a bug in the
    bounds code and propagates (never shown to a user as a reason)."""
    start = time.perf_counter()
    spec = prop.spec()
    if spec is None:
        return None, "no linear specification for this property (custom property)", Certificate(None, None, None, 0.0)
    if model.bounds_unavailable:
        return None, f"no certified bound: {model.bounds_unavailable}", Certificate(None, None, None, 0.0)
    config = (config if isinstance(config, CertifyConfig) else CertifyConfig()).on_device_of(model)
    try:
        cert = certify_radius(model.graph, spec, center, norm, radius, domain, unit=unit, config=config,
                              upper_hint=upper_hint)
    except (MemoryError, torch.OutOfMemoryError) as exc:  # the machine, not the bounds: the rest of the result stands
        log.warning("certified bounds ran out of memory: %s", exc)
        return (None, f"out of memory while bounding ({type(exc).__name__}); lower certify.memory_mb or give the job more",
                Certificate(None, None, None, time.perf_counter() - start))
    if cert.radius_lower is None:
        return None, cert.reason or "not certified", cert
    return float(cert.radius_lower), cert.method or cert.reason or "bounds", cert


def bracket(model, prop: BoundProperty, center: torch.Tensor, norm: str, max_radius: float, domain: Domain,
            unit: torch.Tensor | None, search: SearchConfig, certify_config, seed: int,
            lipschitz: bool = True) -> Bracket:
    """Estimate, witness upper bound and certified lower bound around `center` (flat, model dtype)."""
    dtype, device = model.dtype, model.device
    region = Region(center, float(max_radius), norm, domain.lower.to(device, dtype), domain.upper.to(device, dtype), unit)
    poll_forward, poll_runtime = (model.poll_forward(search.poll_evaluator) if hasattr(model, "poll_forward")
                                  else (model.forward_flat, getattr(model, "evaluator", "torch")))
    evaluator = Evaluator(model, prop.value, search.chunk_size, search.budget_for(model), forward=poll_forward)
    generator = torch.Generator().manual_seed(seed)
    z_center = model.forward_flat(center.unsqueeze(0)).to(dtype)
    w0 = float(prop.value(z_center)[0])
    if not w0 > prop.threshold:
        return Bracket(w0, prop.threshold, radius_estimate=0.0, radius_upper=0.0, witness=center.clone(), radius_lower=0.0,
                       radius_lower_method="property fails at the input", violated_at_center=True)
    out = Bracket(w0, prop.threshold, poll_evaluator=poll_runtime)
    search_prop = robust(prop, z_center[0])  # violations by more than the witness margin
    tracker = ViolationTracker(search_prop, region)
    evaluator.observers.append(tracker)
    if lipschitz:
        L_hat = lipschitz_search(prop, region, w0, evaluator, search, generator)
        out.lipschitz_estimate = L_hat
        margin = w0 - prop.threshold
        out.radius_estimate = float(max_radius) if L_hat <= 0 else min(float(max_radius), margin / L_hat)
    witness = locate_witness(model, search_prop, region, evaluator, search, generator, tracker)
    if witness is not None:
        out.radius_upper, out.witness = witness.distance, witness.x
        out.witness_margin, out.witness_margin_required = witness.margin, witness.margin_required
        out.witness_rechecked_by = witness.rechecked_by
    out.evaluations = evaluator.evaluations
    if certify_config is not False:
        cap = float(max_radius) if out.radius_upper is None else min(float(max_radius), out.radius_upper)
        lower, method, cert = certify(model, prop, center, norm, cap, domain, unit, certify_config, out.radius_upper)
        out.certify_budget_exhausted, out.certify_clock_capped = cert.budget_exhausted, cert.clock_capped
        out.certify_work, seconds = cert.work, cert.seconds
        out.certify_memory_mb, out.certify_memory_need_mb = cert.memory_mb, cert.memory_need_mb
        if lower is not None and out.radius_upper is not None and lower > out.radius_upper * (1 + 1e-6) + 1e-9:
            log.error("certified radius %.6g exceeds witness radius %.6g: refusing it", lower, out.radius_upper)
            lower, method = None, f"refused: certified {lower:.6g} > witness {out.radius_upper:.6g} (bug, please report)"
        out.radius_lower, out.radius_lower_method, out.certify_seconds = lower, method, seconds
    else:
        out.radius_lower_method = "not computed: certified bounds were skipped"
    return out


def _prepare(model, x, domain: Domain, what: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(-1)
    if x.numel() != model.n_inputs:
        raise DataError(f"{what} has {x.numel()} values, the model expects {model.n_inputs} "
                        f"(input shape {tuple(model.input_shape)})")
    return domain.check_and_clip(x.unsqueeze(0), what)[0]


def _validate(norm, max_radius, scale, domain: Domain, model) -> tuple[str, float, torch.Tensor | None]:
    norm = parse_norm(norm)
    try:
        max_radius = float(max_radius)
    except (TypeError, ValueError):
        raise ConfigError(f"max radius must be a number, got {max_radius!r}") from None
    if not (max_radius > 0 and np.isfinite(max_radius)):
        raise ConfigError(f"max radius must be a finite number > 0, got {max_radius}")
    if scale not in SCALES:
        raise ConfigError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if domain.n != model.n_inputs:
        raise DataError(f"domain has {domain.n} features, the model expects {model.n_inputs}")
    unit = domain.width().to(model.device, model.dtype) if scale == "domain" else None
    return norm, max_radius, unit


def compute_radius(model, x0, prop: Property, norm, max_radius, domain: Domain, *, scale: str = "input",
                   label: int | None = None, input_id: str = "0", search: SearchConfig | None = None,
                   certify=None, seed: int = 0, references=None, witness_store: WitnessStore | None = None,
                   witness_ref_prefix: str = "") -> RadiusResult:
    """The result record for one input. `references` (properties measured around reference
    inputs, i.e. invariance): list of (id, x1) with a different label than x0's `label`.
    `certify`: a saferisk.bounds.CertifyConfig, None for the default, or False to skip
    certified bounds."""
    norm, max_radius, unit = _validate(norm, max_radius, scale, domain, model)
    search = search or SearchConfig()
    x0_t = _prepare(model, x0, domain, f"input {input_id}")
    result = RadiusResult(input_id=str(input_id), property=prop.kind, norm=norm, max_radius=max_radius,
                          label=None if label is None else int(label), scale=scale,
                          search_mode=search.describe(model), device=device_name(model), evaluator=model.evaluator,
                          seed=int(seed),
                          saferisk_version=__version__, model=model.name, model_sha256=model.sha256)
    start = time.perf_counter()
    center = x0_t.to(model.device, model.dtype)
    z0 = model.forward_flat(center.unsqueeze(0))[0]
    if not bool(torch.isfinite(z0).all()):
        result.status = failed_status("non-finite model outputs (NaN/inf) at the input")
        result.radius_lower_method = "not computed: the input failed"
        result.seconds = time.perf_counter() - start
        return result
    result.decision = int(z0.argmin() if getattr(prop, "decision", "argmax") == "argmin" else z0.argmax())
    pseed = input_seed(seed, input_id)
    measured = []
    for ref_id, x in prop.centers(x0_t, label, references, input_id=result.input_id):
        if ref_id is None:  # around x0 itself
            bound = prop.bind_center(z0.double().cpu(), label, None)
            b = bracket(model, bound, center, norm, max_radius, domain, unit, search, certify, pseed)
            measured.append(Measured(None, center, b))
            continue
        x1_t = _prepare(model, x, domain, f"reference input {ref_id}").to(model.device, model.dtype)
        z1 = model.forward_flat(x1_t.unsqueeze(0))[0]
        bound = prop.bind_center(z1.double().cpu(), label, ref_id)
        b = bracket(model, bound, x1_t, norm, max_radius, domain, unit, search, certify,
                    pseed + zlib.crc32(ref_id.encode()) % 9973)
        ref_distance = float(norm_distance(x1_t.double().cpu().unsqueeze(0), x0_t.unsqueeze(0)[0], norm,
                                           None if unit is None else unit.double().cpu())[0])
        measured.append(Measured(ref_id, x1_t, b, ref_distance))
    _fill(result, measured, witness_store, witness_ref_prefix, x0_t)
    result.seconds = time.perf_counter() - start - result.certify_seconds
    return result


def _min_or_none(values):
    values = [v for v in values if v is not None]
    return min(values) if values else None


def _fill(result: RadiusResult, measured: list[Measured], store: WitnessStore | None, prefix: str,
          x0_t: torch.Tensor) -> None:
    """Combine the bracket(s) into the record: around references, the minimum over them."""
    all_b = [m.bracket for m in measured]
    lowers = [b.radius_lower for b in all_b]
    methods = [b.radius_lower_method for b in all_b]
    if measured[0].reference_id is None:  # around x0 itself
        center, chosen, ref_info = measured[0].center, measured[0].bracket, None
    else:
        key = lambda m: (m.bracket.radius_upper if m.bracket.radius_upper is not None else float("inf"),
                         m.bracket.radius_estimate if m.bracket.radius_estimate is not None else float("inf"))
        nearest = min(measured, key=key)
        center, chosen = nearest.center, nearest.bracket
        ref_info = {"reference_id": nearest.reference_id, "reference_distance": nearest.reference_distance,
                    "references": [{"id": m.reference_id, "distance": m.reference_distance,
                                    "radius_upper": m.bracket.radius_upper, "radius_estimate": m.bracket.radius_estimate,
                                    "radius_lower": m.bracket.radius_lower} for m in measured]}
        result.extra.update(ref_info)
    result.value_at_x0 = chosen.value_at_center
    result.threshold = chosen.threshold
    result.lipschitz_estimate = chosen.lipschitz_estimate
    result.radius_estimate = _min_or_none([b.radius_estimate for b in all_b])
    result.radius_upper = _min_or_none([b.radius_upper for b in all_b])
    result.evaluations = sum(b.evaluations for b in all_b)
    result.certify_seconds = sum(b.certify_seconds for b in all_b)
    if any(b.certify_budget_exhausted for b in all_b):
        result.extra["certify_budget_exhausted"] = True
    if any(b.certify_clock_capped for b in all_b):
        result.extra["certify_clock_capped"] = True
    polls = sorted({b.poll_evaluator for b in all_b if b.poll_evaluator and b.poll_evaluator != result.evaluator})
    if polls:  # the derivative-free polls ran in another runtime than the model's evaluator
        result.extra["poll_evaluator"] = ",".join(polls)
    if any(b.certify_work for b in all_b):
        result.extra["certify_work"] = int(sum(b.certify_work for b in all_b))
    if any(b.certify_memory_mb for b in all_b):  # the budget the bounds kept to: a number it changed is explained
        result.extra["certify_memory_mb"] = int(max(b.certify_memory_mb for b in all_b))
        if any(b.certify_memory_mb < b.certify_memory_need_mb for b in all_b):
            result.extra["certify_memory_need_mb"] = int(max(b.certify_memory_need_mb for b in all_b))
    if all(v is not None for v in lowers):
        result.radius_lower = min(lowers)
        result.radius_lower_method = methods[int(np.argmin(lowers))]
    else:
        result.radius_lower = None
        result.radius_lower_method = next(m for v, m in zip(lowers, methods) if v is None)
    if any(b.violated_at_center for b in all_b):
        result.status = STATUS_VIOLATED_AT_INPUT
    if result.radius_upper is not None and result.radius_estimate is not None:
        result.estimate_exceeds_upper = bool(result.radius_estimate > result.radius_upper * (1 + 1e-9))
    witness_b = min((b for b in all_b if b.radius_upper is not None), key=lambda b: b.radius_upper, default=None)
    if witness_b is not None and witness_b.witness_margin is not None:
        result.extra["witness_margin"] = witness_b.witness_margin
        result.extra["witness_margin_required"] = witness_b.witness_margin_required
        result.extra["witness_rechecked_by"] = witness_b.witness_rechecked_by
    if witness_b is not None and store is not None:
        key = result.input_id
        store.add(key, _flat64(x0_t if ref_info is None else center), _flat64(witness_b.witness))
        result.witness_ref = format_ref(prefix, key)


def _flat64(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().double().numpy().reshape(-1)


def nearest_references(X: torch.Tensor, labels, index: int, k: int, norm: str, unit) -> list[int]:
    """Indices of the k inputs nearest to X[index] (in the audit's norm) with a different label."""
    others = [i for i in range(X.shape[0]) if int(labels[i]) != int(labels[index])]
    if not others:
        return []
    d = norm_distance(X[others], X[index], norm, unit)
    order = torch.argsort(d, stable=True)[:k]
    return [others[int(i)] for i in order]


def compute_radii(model, X, prop: Property, norm, max_radius, domain: Domain, *, labels=None, ids=None,
                  references=None, scale: str = "input", search: SearchConfig | None = None, certify=None,
                  seed: int = 0, witness_path=None, witness_ref: str | None = None, progress=None) -> list[RadiusResult]:
    """Results for every row of X (N, n). A property measured around reference inputs
    (`needs_references`, e.g. invariance) takes the `reference_count()` nearest ones of another
    label: from X itself with `labels`, or from references=(X_ref, labels_ref, ids_ref).
    Witnesses go to `witness_path` (.npz; referenced as '<witness_ref or file name>#<id>')."""
    X_t = torch.as_tensor(np.asarray(X, dtype=np.float64))
    X_t = X_t.reshape(X_t.shape[0], -1)
    n = X_t.shape[0]
    ids = [str(i) for i in range(n)] if ids is None else [str(i) for i in ids]
    if len(ids) != n or (labels is not None and len(labels) != n):
        raise DataError(f"{n} inputs but {len(ids)} ids / {None if labels is None else len(labels)} labels")
    store = WitnessStore() if witness_path is not None else None
    prefix = witness_ref if witness_ref is not None else (str(witness_path.name) if hasattr(witness_path, "name") else str(witness_path or ""))
    ref_X = ref_labels = ref_ids = None
    if prop.needs_references:
        if labels is None:
            raise DataError(f"{prop.kind} needs labelled inputs (give labels)")
        ref_X, ref_labels, ref_ids = references if references is not None else (X_t, labels, ids)
        ref_X = torch.as_tensor(np.asarray(ref_X, dtype=np.float64)).reshape(len(ref_ids), -1)
        norm_c = parse_norm(norm)
        unit = domain.width() if scale == "domain" else None
    results = []
    for i in range(n):
        refs = None
        if prop.needs_references:
            all_X = torch.cat([X_t[i : i + 1], ref_X])
            all_labels = [labels[i]] + list(ref_labels)
            picked = nearest_references(all_X, all_labels, 0, prop.reference_count(), norm_c, unit)
            refs = [(ref_ids[j - 1], ref_X[j - 1]) for j in picked]
        results.append(compute_radius(model, X_t[i], prop, norm, max_radius, domain, scale=scale,
                                      label=None if labels is None else int(labels[i]), input_id=ids[i],
                                      search=search, certify=certify, seed=seed, references=refs,
                                      witness_store=store, witness_ref_prefix=prefix))
        if progress is not None:
            progress(i + 1, n, results[-1])
    if store is not None:
        store.save(witness_path)
    return results
