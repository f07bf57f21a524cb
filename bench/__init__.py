"""The s3sqsd benchmarks and chaos run, run from the repository root as modules:
``python -m bench.run --help``, ``python -m bench.sync --help`` (``s3sqsd sync`` against
``aws s3 sync`` and ``rclone copy``), ``python -m bench.chaos --help`` (docs/performance.md,
docs/reliability.md). They use the test suite's harness (``tests.support``) as a package."""
