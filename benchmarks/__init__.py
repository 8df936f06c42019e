"""mmsim benchmarks: ``python -m benchmarks --help``."""
