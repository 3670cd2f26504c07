"""From a validated config to an audit plan: every model, input set, property and radius job.

Checks JSON Schema cannot express happen here, at parse time, before any job runs: names
that refer to other keys, model/input-set shape agreement, labels needed by invariance,
criteria pointing at measured (property, norm) pairs. A list of norms expands into separate
jobs; each input set is split into shards of `sharding.shard_size` selected rows.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from saferisk import layout
from saferisk.config.criteria import check_measured
from saferisk.config.models import model_source
from saferisk.config.runtime import certify_config, check_domain, property_object, search_config
from saferisk.config.schema import check_schema
from saferisk.data.shards import shard_count, shard_range
from saferisk.data.spec import InputSetDescription, InputSetSpec, SelectionError, describe
from saferisk.errors import ConfigError, DataError
from saferisk.io import canonical_json, sha256_file

NORM_NAMES = {"inf": "inf", "linf": "inf", "2": "2", "l2": "2", "1": "1", "l1": "1"}
CLASSIFIER_KINDS = ("robustness", "uncertainty", "invariance")
REGRESSION_KINDS = ("reachability",)
DEFAULT_CONFIG = Path("config") / "config.yaml"


def canonical_norm(value: Any) -> str:
    """'inf', '2' or '1' for the schema's norm spellings (inf, linf, l2, 2, ...)."""
    key = str(value).strip().lower()
    if key not in NORM_NAMES:
        raise ConfigError(f"unknown norm {value!r}; choose one of: inf, 2, 1")
    return NORM_NAMES[key]


@dataclass(frozen=True)
class RadiusJob:
    """One radius job: (model, input set, property, norm, shard)."""

    model: str
    inputs: str
    property: str
    norm: str
    shard: int

    @property
    def output(self) -> str:
        return layout.radius_table(self.model, self.inputs, self.property, self.norm, self.shard)

    @property
    def witnesses(self) -> str:
        return layout.radius_witnesses(self.model, self.inputs, self.property, self.norm, self.shard)


@dataclass
class ModelPlan:
    name: str
    spec: dict[str, Any]
    source: Path
    format: str
    n_features: int | None
    input_sets: list[str]
    properties: list[str]

    def source_sha256(self) -> str:
        return sha256_file(self.source)


@dataclass
class InputSetPlan:
    name: str
    spec: dict[str, Any]  # the config entry
    info: InputSetDescription
    shard_size: int

    @property
    def n_shards(self) -> int:
        return shard_count(self.info.n_rows, self.shard_size)

    def shard_rows(self, k: int) -> tuple[int, int]:
        """[start, stop) positions of shard k among the selected rows."""
        return shard_range(k, self.info.n_rows, self.shard_size)

    def shard_fingerprint(self, k: int) -> str:
        return self.info.shard_fingerprint(*self.shard_rows(k))

    def shard_positions(self, k: int) -> list[int]:
        """Source rows of shard k (box sets: 0 is the centre, i the i-th drawn sample)."""
        start, stop = self.shard_rows(k)
        return self.info.positions[start:stop]

    def load_spec(self) -> dict[str, Any]:
        """How to read the source (without selection/samples: those reach a job as positions)."""
        return {k: v for k, v in self.spec.items() if k not in ("selection", "samples")}

    def shards(self) -> list[str]:
        return [layout.input_shard(self.name, k) for k in range(self.n_shards)]


@dataclass
class AuditPlan:
    """A validated config (defaults filled) and everything derived from it."""

    config: dict[str, Any]
    base: Path
    models: dict[str, ModelPlan] = field(default_factory=dict)
    input_sets: dict[str, InputSetPlan] = field(default_factory=dict)
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    norms: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # legal but probably not meant (printed, not fatal)

    def radius_jobs(self) -> list[RadiusJob]:
        jobs = []
        for m in self.models.values():
            for d in m.input_sets:
                for p in m.properties:
                    for norm in self.norms[p]:
                        for k in range(self.input_sets[d].n_shards):
                            jobs.append(RadiusJob(m.name, d, p, norm, k))
        return jobs

    def property_spec(self, name: str) -> dict[str, Any]:
        """The plain-dict spec a radius job receives (changing it reruns that property's jobs)."""
        spec = self.properties[name]
        return {"kind": spec["kind"], "params": spec["params"], "max_radius": float(spec["max_radius"]),
                "scale": spec["scale"], "search": spec["search"], "certify": spec["certify"]}

    def model_config(self, model: str | None = None) -> dict[str, Any]:
        """The validated config (defaults filled), or with `model` the entries that model's
        results depend on (its own entry, its input sets and properties, the criteria, seeds,
        report options)."""
        config = self.config
        if model is None:
            return config
        plan = self.models[model]
        return {"model": config["models"][model],
                "input_sets": {d: config["input_sets"][d] for d in plan.input_sets},
                "properties": {p: config["properties"][p] for p in plan.properties},
                **{k: config.get(k) for k in ("criteria", "seeds", "report")}}

    def config_sha256(self, model: str | None = None) -> str:
        """SHA-256 of saferisk.io.canonical_json(model_config(model)): names the audit setup in the
        reports' provenance (a model's subset: what its results depend on)."""
        return hashlib.sha256(canonical_json(self.model_config(model)).encode()).hexdigest()

    def summary(self) -> str:
        def count(n: int, what: str, plural: str | None = None) -> str:
            return f"{n} {what if n == 1 else plural or what + 's'}"

        return (f"{count(len(self.models), 'model')}, {count(len(self.input_sets), 'input set')}, "
                f"{count(len(self.properties), 'property', 'properties')} -> {count(len(self.radius_jobs()), 'radius job')}")

    def wildcard_pattern(self, what: str) -> str:
        names = {"model": self.models, "inputs": self.input_sets, "property": self.properties}[what]
        return "|".join(re.escape(n) for n in sorted(names))


def _default_properties(output_kind: str, properties: dict[str, dict]) -> list[str]:
    wanted = REGRESSION_KINDS if output_kind == "regression" else CLASSIFIER_KINDS
    return [name for name, spec in properties.items() if spec["kind"] in wanted]


def check_numbers(value: Any, key: str = "") -> None:
    """Every number of the config is finite: NaN nowhere (a NaN radius or budget passes every
    schema comparison), infinity only in property params (an unbounded reachability side).
    Domains are checked where they are read (infinite bounds mean no bound there)."""
    if key.endswith(".domain") or key == "domain":
        return
    if isinstance(value, dict):
        for k, v in value.items():
            check_numbers(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_numbers(v, f"{key}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        allowed = math.isinf(value) and key.startswith("properties.") and ".params." in key
        if not allowed:
            raise ConfigError(f"{key}: must be a finite number, got {value}")


def build_plan(config: dict[str, Any], base: str | Path = ".") -> AuditPlan:
    """Validate `config` (schema + cross-key checks) and expand it into an AuditPlan."""
    config = check_schema(config)
    plan = AuditPlan(config=config, base=Path(base))
    _plan_properties(plan)
    check_numbers(config)  # (after the properties: max_radius has its own message)
    _plan_input_sets(plan)
    for name, spec in config["models"].items():
        plan.models[name] = _plan_model(plan, name, spec)
    measured = {(p, n) for m in plan.models.values() for p in m.properties for n in plan.norms[p]}
    for i, criterion in enumerate(config["criteria"]):
        _check_criterion(plan, criterion, measured, f"criteria[{i}]")
    plan.warnings.extend(_radius_warnings(plan))
    return plan


def _domain_widths(plan: AuditPlan, model: ModelPlan, inputs: str) -> np.ndarray | None:
    """Per-feature widths of the domain a model is measured in on an input set, where the
    config states it (the model's `domain`, else the input set's, else a box): None otherwise."""
    n = model.n_features or plan.input_sets[inputs].info.n_features
    block = model.spec.get("domain") or plan.input_sets[inputs].spec.get("domain") or plan.input_sets[inputs].info.box
    if not block or n is None:
        return None
    sides = [np.asarray(block[side], dtype=float).reshape(-1) for side in ("lower", "upper")]
    if any(side.size not in (1, n) for side in sides):
        return None
    widths = np.broadcast_to(sides[1], (n,)) - np.broadcast_to(sides[0], (n,))
    return widths if np.isfinite(widths).all() else None


def _radius_warnings(plan: AuditPlan) -> list[str]:
    """A max_radius above the domain's diameter in its norm measures nothing beyond it: the ball
    then covers the whole domain (legal, so a warning)."""
    out = []
    for model in plan.models.values():
        for inputs in model.input_sets:
            widths = _domain_widths(plan, model, inputs)
            if widths is None:
                continue
            for p in model.properties:
                spec = plan.properties[p]
                w = np.ones_like(widths) if spec["scale"] == "domain" else widths
                for norm in plan.norms[p]:
                    diameter = float(np.linalg.norm(w, ord=np.inf if norm == "inf" else int(norm)))
                    if float(spec["max_radius"]) > diameter * (1 + 1e-9):
                        out.append(f"properties.{p}.max_radius: {spec['max_radius']} exceeds the diameter "
                                   f"{diameter:.6g} (L{norm}) of model {model.name!r}'s domain on input set "
                                   f"{inputs!r}: the ball covers the whole domain beyond it")
    return sorted(set(out))


def _plan_properties(plan: AuditPlan) -> None:
    """Norms expanded; the objects a radius job builds, built now: a bad value stops the run
    before any job starts."""
    for name, spec in plan.config["properties"].items():
        norms = spec["norms"] if isinstance(spec["norms"], list) else [spec["norms"]]
        canon = [canonical_norm(n) for n in norms]
        if len(set(canon)) != len(canon):
            raise ConfigError(f"properties.{name}.norms: the same norm is listed twice ({norms})")
        plan.norms[name] = canon
        plan.properties[name] = spec
        if spec["kind"] == "reachability" and not ({"lower", "upper"} & set(spec["params"])):
            raise ConfigError(f"properties.{name}.params: reachability needs `lower` and/or `upper` "
                              f"(the allowed output interval)")
        if spec["kind"] == "custom" and not spec["params"].get("function"):
            raise ConfigError(f"properties.{name}.params.function: a custom property needs 'module:function'")
        if not math.isfinite(float(spec["max_radius"])):
            raise ConfigError(f"properties.{name}.max_radius: must be a finite number > 0, got {spec['max_radius']}")
        search_config(spec["search"], f"properties.{name}.search")
        certify_config(spec["certify"], f"properties.{name}.certify")


def _plan_input_sets(plan: AuditPlan) -> None:
    """Describe every input set (rows, features, labels, row digests) through saferisk.data."""
    shard_size = int(plan.config["sharding"]["shard_size"])
    for name, entry in plan.config["input_sets"].items():
        try:
            spec = InputSetSpec.from_config(name, entry, plan.base, plan.config["seeds"])
        except DataError as exc:
            raise ConfigError(str(exc)) from None
        try:
            info = describe(spec)
        except SelectionError as exc:
            raise ConfigError(str(exc)) from None
        except DataError as exc:
            raise ConfigError(f"{spec.where}: {exc}") from None
        if entry.get("domain") is not None and info.n_features is not None:
            check_domain(entry["domain"], info.n_features, f"input_sets.{name}.domain")
        plan.input_sets[name] = InputSetPlan(name, entry, info, shard_size)


def _plan_model(plan: AuditPlan, name: str, spec: dict[str, Any]) -> ModelPlan:
    key = f"models.{name}"
    source, fmt, n_features = model_source(spec, plan.base, key)
    for d in spec["input_sets"]:
        if d not in plan.input_sets:
            raise ConfigError(f"{key}.input_sets: unknown input set {d!r}; defined: {', '.join(sorted(plan.input_sets))}")
        got = plan.input_sets[d].info.n_features
        if n_features is not None and got is not None and got != n_features:
            raise ConfigError(f"{key}.input_sets: input set {d!r} has {got} features per input, "
                              f"but model {name!r} takes {n_features}")
    props = _model_properties(plan, name, spec)
    if spec["domain"] is not None and n_features is not None:
        check_domain(spec["domain"], n_features, f"{key}.domain")
    return ModelPlan(name, spec, source, fmt, n_features, list(spec["input_sets"]), props)


def _model_properties(plan: AuditPlan, name: str, spec: dict[str, Any]) -> list[str]:
    """The model's properties (default: every property suiting its output_kind), checked."""
    key = f"models.{name}"
    props = spec["properties"]
    if props is None:
        props = _default_properties(spec["output_kind"], plan.properties)
        if not props:
            raise ConfigError(f"{key}.properties: no property suits output_kind {spec['output_kind']!r}; "
                              f"list the properties for this model")
    for p in props:
        if p not in plan.properties:
            raise ConfigError(f"{key}.properties: unknown property {p!r}; defined: {', '.join(sorted(plan.properties))}")
        kind = plan.properties[p]["kind"]
        if kind in CLASSIFIER_KINDS and spec["output_kind"] == "regression":
            raise ConfigError(f"{key}.properties: {p!r} ({kind}) needs a classifier, model {name!r} is a regression model")
        if kind == "invariance":
            for d in spec["input_sets"]:
                if not plan.input_sets[d].info.has_labels:
                    raise ConfigError(f"{key}.properties: {p!r} (invariance) needs labels, input set {d!r} has none")
    if len(set(props)) != len(props):
        raise ConfigError(f"{key}.properties: a property is listed twice")
    for p in props:
        property_object(plan.properties[p], spec, f"properties.{p}.params")
    return list(props)


def _check_criterion(plan: AuditPlan, crit: dict[str, Any], measured: set[tuple[str, str]], key: str) -> None:
    """The criterion names a measured (property, norm), an audited model, a radius <= max_radius;
    its norm is canonicalised in place."""
    p = crit["property"]
    if p not in plan.properties:
        raise ConfigError(f"{key}.property: unknown property {p!r}; defined: {', '.join(sorted(plan.properties))}")
    if crit["norm"] is not None:
        crit["norm"] = canonical_norm(crit["norm"])
    check_measured(crit, measured, key, by="any model")
    m = crit["model"]
    if m is not None:
        if m not in plan.models:
            raise ConfigError(f"{key}.model: unknown model {m!r}; defined: {', '.join(sorted(plan.models))}")
        if p not in plan.models[m].properties:
            raise ConfigError(f"{key}.model: model {m!r} does not measure property {p!r}")
    if crit["radius"] > plan.properties[p]["max_radius"]:
        raise ConfigError(f"{key}.radius: {crit['radius']} exceeds properties.{p}.max_radius "
                          f"({plan.properties[p]['max_radius']}); nothing above max_radius is measured")


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        raise ConfigError(f"{path}: the config is empty")
    return data


def load_plan(path: str | Path = DEFAULT_CONFIG, base: str | Path = ".") -> AuditPlan:
    """Read a YAML config file and build its plan (paths relative to `base`, the working dir)."""
    return build_plan(load_config_file(path), base)
