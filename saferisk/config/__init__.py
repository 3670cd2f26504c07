"""The audit configuration: one JSON schema shipped in the package, loading, parse-time
checks and the expansion into radius jobs (used by the Snakefile and the CLI)."""

from saferisk.config.plan import (
    AuditPlan,
    InputSetPlan,
    ModelPlan,
    RadiusJob,
    build_plan,
    canonical_norm,
    load_config_file,
    load_plan,
)
from saferisk.config.schema import check_schema, load_schema, schema_keys, schema_path

__all__ = [
    "AuditPlan", "InputSetPlan", "ModelPlan", "RadiusJob", "build_plan", "canonical_norm",
    "load_config_file", "load_plan", "check_schema", "load_schema", "schema_keys", "schema_path",
]
