"""Rule export_model: canonical model.onnx + manifest.json (saferisk.steps.export.export_model_step)."""
from pathlib import Path

from saferisk.steps.export import export_model_step
from saferisk.steps.runner import run_step

run_step(
    snakemake.log[0],
    export_model_step,
    model_name=snakemake.wildcards.model,
    model_spec=snakemake.params.spec,
    source_path=snakemake.input.source,
    out_dir=str(Path(snakemake.output.model).parent),
)
