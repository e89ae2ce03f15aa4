"""Version constants that enter artifact versions; imported by the Snakefile, so this module stays dependency-free."""

# Bump when the demo generator's output for a given configuration changes.
GENERATOR_VERSION = "2"  # 2: independent random streams per split
