"""The audit configuration: one JSON schema shipped in the package, loading, parse-time
checks and the expansion into radius jobs (used by the Snakefile and the CLI).

The names below load their modules on first use (PEP 562): a job that reads one submodule
(`saferisk.config.runtime`, `saferisk.config.criteria`) does not load the planner and the schema."""

from typing import TYPE_CHECKING

from saferisk.lazy import lazy_package

if TYPE_CHECKING:  # (for type checkers and editors; at run time `__getattr__` below)
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

_EXPORTS = {
    **dict.fromkeys(("AuditPlan", "InputSetPlan", "ModelPlan", "RadiusJob", "build_plan", "canonical_norm",
                     "load_config_file", "load_plan"), "plan"),
    **dict.fromkeys(("check_schema", "load_schema", "schema_keys", "schema_path"), "schema"),
}
__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_package(__name__, _EXPORTS, globals())
