"""The s3sqsd benchmark: ``python bench/run.py --help`` (see docs/performance.md)."""
