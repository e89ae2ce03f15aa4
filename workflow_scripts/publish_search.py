"""Rule publish_search: results/search/{collection}/{photos}.{csv,html,json} from the versioned search."""

from retrieval.runtime import limit_threads, setup_logging

limit_threads(snakemake.threads)
setup_logging(snakemake.log[0])

from retrieval.stages.search import publish_search  # noqa: E402

publish_search(
    {k: snakemake.input[k] for k in ("csv", "html", "json")}, {k: snakemake.output[k] for k in ("csv", "html", "json")}
)
