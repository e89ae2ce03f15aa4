"""Rule demo_data: generate the demo, demo-val and demo-train splits."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(1)  # the splits are rendered in snakemake.threads processes of one thread each
setup_logging(snakemake.log[0])

from pathlib import Path  # noqa: E402

from retrieval.stages.lists import make_demo  # noqa: E402

make_demo(
    Path(snakemake.output.manifest).parent,
    snakemake.params.demo,
    snakemake.params.version,
    snakemake.params.preset,
    workers=snakemake.threads,
)
