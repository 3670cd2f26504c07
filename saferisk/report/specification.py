"""What was tested, in words: the specification statement of each property section.

`property_specification(name, norm, audit_config, model, rows)` turns the resolved audit
configuration (models, input_sets, properties with params / norms / max_radius / scale /
search / certify, criteria) into (term, statement) rows: the requirement with its parameters
(defaults filled by the property's own class), what a witness is, norm, unit, maximum radius,
input domain, search and certification effort. Without the configuration it says so and states
only what the results table itself records, never inventing the rest.
"""

from __future__ import annotations

import math
from dataclasses import fields

import pandas as pd

from saferisk.audit.verdict import norm_name, unit_text
from saferisk.bounds.config import CertifyConfig
from saferisk.properties import make_property
from saferisk.search.config import BLACK_BOX_GRADIENTS, SearchConfig

NORM_WORDS = {"inf": "the largest change of any single feature", "2": "the Euclidean length of the change",
              "1": "the sum of the absolute changes of all features"}
NOT_SUPPLIED = "specification not supplied: the report was rendered without the audit configuration"


def _num(value) -> str:
    return f"{float(value):g}"


def _interval(lower: float, upper: float) -> str:
    if math.isinf(lower):
        return f"at most {_num(upper)}"
    if math.isinf(upper):
        return f"at least {_num(lower)}"
    return f"in [{_num(lower)}, {_num(upper)}]"


def requirement_text(prop) -> tuple[str, str]:
    """(requirement, what a witness is) in words for a Property object (defaults filled)."""
    kind = prop.kind
    if kind == "robustness":
        if getattr(prop, "binary_threshold", None) is not None:
            rule = f"class 1 where the single output ≥ {_num(prop.binary_threshold)}"
        else:
            rule = f"{prop.decision} of the outputs"
        targets = (f"; only a change to one of the classes {', '.join(map(str, prop.target_classes))} counts"
                   if prop.target_classes else "")
        return (f"the model's decision ({rule}) at the input must not change anywhere within the radius{targets}",
                "an input within the radius whose decision differs from the decision at the unchanged input")
    if kind == "reachability":
        output = (f"output {prop.output}" if isinstance(prop.output, int)
                  else f"the weighted output a·z with a = ({', '.join(_num(v) for v in prop.output)})")
        allowed = _interval(prop.lower, prop.upper)
        return (f"{output} must stay {allowed} for every input within the radius",
                f"an input within the radius where {output} leaves the allowed range ({allowed})")
    if kind == "uncertainty":
        outputs = "the outputs" if prop.outputs == "probabilities" else "softmax(outputs)"
        return (f"the model must not become unsure: KL(uniform ‖ {outputs}) must stay above epsilon "
                f"{_num(prop.epsilon)} within the radius (at or below it the output is near-uniform)",
                f"an input within the radius where KL(uniform ‖ {outputs}) ≤ {_num(prop.epsilon)}")
    if kind == "invariance":
        return (f"for each of the k = {prop.k} nearest audited input(s) with a different label (the reference "
                "inputs), the model must not give the reference, or any input within the radius of it, the "
                "label of this input; the radius is measured around the reference",
                "an input within the radius of a reference input that the model gives this input's label "
                "(distance 0: the model already gives the reference this label)")
    if kind == "custom":
        return (f"the margin {prop.function}(outputs) must stay above {_num(prop.threshold)} within the radius",
                f"an input within the radius where {prop.function}(outputs) ≤ {_num(prop.threshold)}")
    if kind == "linear_output":
        return (f"the outputs must stay out of the unsafe set, a union of {len(prop.unsafe)} polytope(s) "
                "{y : C y ≤ d}, within the radius",
                "an input within the radius whose outputs lie in the unsafe set")
    return (f"property of kind {kind}", "an input within the radius where the property fails")


def parameters_text(prop) -> str:
    """'epsilon = 0.1, outputs = logits': every parameter of the property, defaults included."""
    parts = []
    for f in fields(prop):
        value = getattr(prop, f.name)
        if value is None:
            continue
        if isinstance(value, float):
            value = _num(value)
        elif isinstance(value, tuple) and len(str(value)) > 80:
            value = f"({len(value)} entries)"
        parts.append(f"{f.name} = {value}")
    return ", ".join(parts) or "none"


MAX_DOMAIN_FEATURES = 6  # per-feature bounds listed in full up to this many features


def domain_text(domain, feature_names=None) -> str | None:
    """A domain {lower, upper} (scalars or per-feature lists) in words: '[0, 1] for every
    feature', or each feature's interval ('x[0] in [0, 10]; ...'), shortened to the first
    MAX_DOMAIN_FEATURES and the overall range when longer; None when not a domain."""
    if not isinstance(domain, dict):
        return None
    lo, hi = domain.get("lower", domain.get("lo")), domain.get("upper", domain.get("hi"))
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
        return f"[{_num(lo)}, {_num(hi)}] for every feature"
    if not (isinstance(lo, list) and isinstance(hi, list) and lo and len(lo) == len(hi)):
        return None
    if len(set(lo)) == 1 and len(set(hi)) == 1:
        return f"[{_num(lo[0])}, {_num(hi[0])}] for each of the {len(lo)} features"
    names = list(feature_names or [])
    parts = [f"{names[i] if i < len(names) else f'x[{i}]'} in [{_num(a)}, {_num(b)}]"
             for i, (a, b) in enumerate(zip(lo, hi))]
    if len(parts) <= MAX_DOMAIN_FEATURES:
        return "; ".join(parts)
    return (f"{'; '.join(parts[:MAX_DOMAIN_FEATURES])}; … ({len(lo)} features, all within "
            f"[{_num(min(lo))}, {_num(max(hi))}]; every bound is in the attached config or input set)")


def model_spec(audit_config: dict | None, model: str | None) -> dict:
    """The model's config entry: `models.<model>` of a whole config, or `model` of a model's
    subset (AuditPlan.model_config(model)); {} when absent."""
    config = audit_config or {}
    if isinstance(config.get("model"), dict):
        return config["model"]
    return ((config.get("models") or {}).get(model or "")) or {}


def domain_rows(audit_config: dict, model: str | None, input_sets: list[str], fallback: str = "",
                set_domains: dict[str, dict] | None = None) -> str:
    """Where the changed inputs must stay: the model's configured domain, else each input
    set's own (its configured `domain`, else the domain its prepared shard records, in
    `set_domains` {set: {lower, upper}}; else `fallback`, e.g. the export manifest's)."""
    parts = []
    text = domain_text(model_spec(audit_config, model).get("domain"))
    if text:
        parts.append(f"model {model}: {text}")
    for name in input_sets:
        spec = (audit_config.get("input_sets") or {}).get(name) or {}
        text = domain_text(spec.get("domain")) or domain_text((set_domains or {}).get(name))
        if text:
            source = f" (the box of {spec['box']})" if spec.get("box") else ""
            parts.append(f"input set {name}{source}: {text}")
        elif spec.get("box"):
            parts.append(f"input set {name}: the box of {spec['box']}")
    return "; ".join(parts) or fallback or "not stated in the configuration"


def input_set_text(audit_config: dict | None, name: str, n_rows: int) -> str:
    """How an input set's inputs were made, from its config entry: 'the first 24 rows of
    demo:digits_test.npz (24 inputs)', 'the centre of the box of demo:regression_net.json
    plus 3 points drawn uniformly at random inside it (seed 0; 4 inputs)'."""
    config = audit_config or {}
    spec = (config.get("input_sets") or {}).get(name) or {}
    seeds = config.get("seeds") or {}
    count = f"{n_rows} input{'s' if n_rows != 1 else ''}"
    if spec.get("box"):
        samples = int(spec.get("samples") or 0)
        drawn = (f" plus {samples} point{'s' if samples != 1 else ''} drawn uniformly at random inside it "
                 f"(seed {seeds.get('samples', 0)}; the centre is input 'box', the points 'sample-0', …)"
                 if samples else "")
        return f"{name}: the centre of the box of {spec['box']}{drawn}; {count}"
    if not spec.get("path"):
        return f"{name}: {count}"
    selection = spec.get("selection") or {}
    if selection.get("first") is not None:
        which = f"the first {selection['first']} rows of {spec['path']}"
    elif selection.get("indices") is not None:
        which = f"rows {', '.join(map(str, selection['indices'][:10]))}{', …' if len(selection['indices']) > 10 else ''} of {spec['path']}"
    elif selection.get("per_class") is not None:
        which = (f"{selection['per_class']} rows per label of {spec['path']}, drawn with seed "
                 f"{seeds.get('selection', 0)}")
    else:
        which = f"every row of {spec['path']}"
    return f"{name}: {which}; {count}"


def search_text(search: dict) -> str:
    """The witness search's mode and effort, defaults filled by SearchConfig."""
    config = SearchConfig.from_dict(search)
    black_box = (f"{config.black_box_budget:,}" if config.black_box_budget is not None
                 else f"plus {BLACK_BOX_GRADIENTS} finite-difference gradients")
    return (f"mode {config.mode}, budget {config.budget:,} forward evaluations per input "
            f"({black_box} for a model without gradients), {config.n_starts} starts, "
            f"at most {config.max_iterations} iterations; minimal-norm attack {config.attack_steps} iterations x "
            f"{config.attack_restarts} runs per target")


def certify_text(certify: dict) -> str:
    """The certification's method and work budget, defaults filled by CertifyConfig."""
    certify = dict(certify)
    if not certify.pop("enabled", True):
        return "disabled (certify.enabled false): no certified lower bounds"
    config = CertifyConfig(**{k: v for k, v in certify.items() if k in {f.name for f in fields(CertifyConfig)}})
    method = config.method or "bab (the strongest; default)"
    work = (f"work budget {config.work_budget:,} bound passes per input (the same on any machine)"
            if config.work_budget is not None else "no work budget")
    return f"method {method}, {work}, wall-clock cap {_num(config.time_budget_s)} s per input"


def property_specification(name: str, norm: str, audit_config: dict | None, model: str | None,
                           rows: pd.DataFrame, manifest_domain: str = "",
                           set_domains: dict[str, dict] | None = None) -> dict:
    """{'supplied': bool, 'note': str, 'rows': [{'term', 'value'}]} for one (property, norm)."""
    input_sets = sorted({str(s) for s in rows["input_set"]}) if len(rows) else []
    unit = unit_text("/".join(sorted({str(s) for s in rows["scale"] if str(s)}))) if len(rows) else "—"
    max_radius = rows["max_radius"].max() if len(rows) and rows["max_radius"].notna().any() else None
    spec = ((audit_config or {}).get("properties") or {}).get(name)
    norm_row = {"term": "norm", "value": f"{norm_name(norm)}: distance = {NORM_WORDS.get(norm, 'the norm ' + norm)}"}
    if spec is None:
        recorded = [{"term": "maximum radius searched", "value": f"{_num(max_radius)} ({unit})" if max_radius else "—"},
                    norm_row, {"term": "radius unit", "value": unit},
                    {"term": "search (from the table)", "value": ", ".join(sorted(set(rows["search_mode"]) - {""})) or "—"}]
        note = NOT_SUPPLIED if audit_config is None else f"specification not supplied: no property {name!r} in the audit configuration"
        return {"supplied": False, "note": note + "; the rows below are what the results table records.",
                "rows": recorded}
    params, entry = dict(spec.get("params") or {}), model_spec(audit_config, model)
    # as saferisk.config.runtime.property_object (a higher layer) builds it for the radius jobs
    if spec["kind"] == "robustness":
        params.setdefault("decision", entry.get("decision", "argmax"))
    if spec["kind"] == "uncertainty" and entry.get("output_kind") == "probabilities":
        params.setdefault("outputs", "probabilities")
    prop = make_property({"kind": spec["kind"], **params})
    requirement, witness = requirement_text(prop)
    scale = spec.get("scale", "input")
    unit_words = ("the model's own units" if scale == "input" else
                  "each feature's change divided by its domain width: 0.1 moves a feature by 10% of its range")
    spec_rows = [
        {"term": "requirement", "value": requirement},
        {"term": "kind and parameters", "value": f"{prop.kind}: {parameters_text(prop)}"},
        {"term": "a witness is", "value": witness},
        norm_row,
        {"term": "radius unit", "value": f"{unit_text(scale)} ({unit_words})"},
        {"term": "maximum radius searched", "value": f"{_num(spec['max_radius'])} ({unit_text(scale)}); nothing is "
                                                     "claimed beyond it"},
        {"term": "inputs", "value": "; ".join(
            input_set_text(audit_config, n, int(rows["input_id"].loc[rows["input_set"] == n].nunique()))
            for n in input_sets) or "—"},
        {"term": "input domain", "value": domain_rows(audit_config, model, input_sets, manifest_domain, set_domains)
         + "; every changed input stays inside it"},
        {"term": "witness search", "value": search_text(spec.get("search") or {})},
        {"term": "certification", "value": certify_text(spec.get("certify") or {})},
    ]
    return {"supplied": True, "note": "", "rows": spec_rows}
