"""From a validated config to an audit plan: every model, input set, property and radius job.

Checks JSON Schema cannot express happen here, at parse time, before any job runs: names
that refer to other keys, model/input-set shape agreement, labels needed by invariance,
criteria pointing at measured (property, norm) pairs. A list of norms expands into separate
jobs; each input set is split into shards of `sharding.shard_size` selected rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from saferisk.config.peek import (
    InputSetInfo,
    model_format,
    onnx_input_features,
    peek_input_set,
    resolve_path,
)
from saferisk.config.runtime import certify_config, domain_object, property_object, search_config
from saferisk.config.schema import check_schema
from saferisk.errors import ConfigError
from saferisk.io import sha256_file

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
        return f"results/radii/{self.model}/{self.inputs}/{self.property}-{self.norm}/shard-{self.shard}.parquet"


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
    spec: dict[str, Any]
    info: InputSetInfo
    shard_size: int

    @property
    def n_shards(self) -> int:
        return max(1, math.ceil(self.info.n_rows / self.shard_size))

    def shard_rows(self, k: int) -> tuple[int, int]:
        """[start, stop) positions of shard k among the selected rows."""
        start = k * self.shard_size
        return start, min(start + self.shard_size, self.info.n_rows)

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
        return [f"results/inputs/{self.name}/shard-{k}.npz" for k in range(self.n_shards)]


@dataclass
class AuditPlan:
    """A validated config (defaults filled) and everything derived from it."""

    config: dict[str, Any]
    base: Path
    models: dict[str, ModelPlan] = field(default_factory=dict)
    input_sets: dict[str, InputSetPlan] = field(default_factory=dict)
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    norms: dict[str, list[str]] = field(default_factory=dict)

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

    def config_sha256(self, model: str | None = None) -> str:
        """SHA-256 of the validated config (defaults filled) as sorted JSON, or with `model` of
        the entries that model's results depend on (its own entry, its input sets and properties,
        the criteria, seeds, report options): names the audit setup in the reports' provenance
        without re-rendering every model's report when another model's entry changes."""
        config = self.config
        if model is not None:
            plan = self.models[model]
            config = {"model": config["models"][model],
                      "input_sets": {d: config["input_sets"][d] for d in plan.input_sets},
                      "properties": {p: config["properties"][p] for p in plan.properties},
                      **{k: config.get(k) for k in ("criteria", "seeds", "report")}}
        text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def summary(self) -> str:
        jobs = self.radius_jobs()
        return (f"{len(self.models)} models, {len(self.input_sets)} input sets, "
                f"{len(self.properties)} properties -> {len(jobs)} radius jobs")

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
    base = Path(base)
    plan = AuditPlan(config=config, base=base)
    seeds = config["seeds"]
    shard_size = int(config["sharding"]["shard_size"])

    for name, spec in config["properties"].items():
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
        # the objects a radius job builds, built now: a bad value stops the run before any job
        search_config(spec["search"], f"properties.{name}.search")
        certify_config(spec["certify"], f"properties.{name}.certify")
    check_numbers(config)  # (after the properties: max_radius has its own message)

    for name, spec in config["input_sets"].items():
        info = peek_input_set(spec, base, seeds, f"input_sets.{name}")
        if spec.get("domain") is not None and info.n_features is not None:
            domain_object(spec["domain"], info.n_features, f"input_sets.{name}.domain")
        plan.input_sets[name] = InputSetPlan(name, spec, info, shard_size)

    for name, spec in config["models"].items():
        key = f"models.{name}"
        source = resolve_path(spec["source"], base, f"{key}.source")
        if not source.exists():
            raise ConfigError(f"{key}.source: model file not found: {source}")
        fmt = model_format(source, spec["format"], key)
        if fmt in ("safetensors", "state_dict") and not spec["factory"]:
            raise ConfigError(f"{key}.factory: a {fmt} source needs a factory 'module:function' that builds the network")
        if fmt == "torchscript" and not spec["input_shape"]:
            raise ConfigError(f"{key}.input_shape: a TorchScript model needs its per-sample input shape, e.g. [1, 28, 28]")
        if spec["factory"] and not spec["input_shape"]:
            raise ConfigError(f"{key}.input_shape: a factory-built model needs its per-sample input shape, e.g. [64]")
        if spec["input_shape"]:
            n_features = int(math.prod(spec["input_shape"]))
        elif fmt == "onnx":
            n_features, _dims = onnx_input_features(source, key)
        else:
            n_features = None
        for d in spec["input_sets"]:
            if d not in plan.input_sets:
                raise ConfigError(f"{key}.input_sets: unknown input set {d!r}; defined: {', '.join(sorted(plan.input_sets))}")
            got = plan.input_sets[d].info.n_features
            if n_features is not None and got is not None and got != n_features:
                raise ConfigError(f"{key}.input_sets: input set {d!r} has {got} features per input, "
                                  f"but model {name!r} takes {n_features}")
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
        if spec["domain"] is not None and n_features is not None:
            domain_object(spec["domain"], n_features, f"{key}.domain")
        plan.models[name] = ModelPlan(name, spec, source, fmt, n_features, list(spec["input_sets"]), list(props))

    measured = {(p, n) for m in plan.models.values() for p in m.properties for n in plan.norms[p]}
    for i, crit in enumerate(config["criteria"]):
        key = f"criteria[{i}]"
        p = crit["property"]
        if p not in plan.properties:
            raise ConfigError(f"{key}.property: unknown property {p!r}; defined: {', '.join(sorted(plan.properties))}")
        if crit["norm"] is not None:
            norm = canonical_norm(crit["norm"])
            if (p, norm) not in measured:
                raise ConfigError(f"{key}.norm: property {p!r} is not measured in norm {norm} by any model; "
                                  f"its norms: {', '.join(plan.norms[p])}")
            crit["norm"] = norm
        elif not any(q == p for q, _ in measured):
            raise ConfigError(f"{key}.property: no model measures property {p!r}")
        m = crit["model"]
        if m is not None:
            if m not in plan.models:
                raise ConfigError(f"{key}.model: unknown model {m!r}; defined: {', '.join(sorted(plan.models))}")
            if p not in plan.models[m].properties:
                raise ConfigError(f"{key}.model: model {m!r} does not measure property {p!r}")
        if crit["radius"] > plan.properties[p]["max_radius"]:
            raise ConfigError(f"{key}.radius: {crit['radius']} exceeds properties.{p}.max_radius "
                              f"({plan.properties[p]['max_radius']}); nothing above max_radius is measured")
    return plan


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
