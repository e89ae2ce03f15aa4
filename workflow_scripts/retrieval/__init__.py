"""Instance-level image retrieval: the library behind the Snakemake workflow.

Modules hold pure functions (metrics, pooling, search) and small I/O helpers with explicit arguments;
the per-rule entry points in ``workflow_scripts/`` only translate the ``snakemake`` object into calls.
Importing this package is cheap: heavy libraries are imported by the modules that need them.
"""

SCHEMA_VERSION = 1
