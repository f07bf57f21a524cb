"""``python -m s3sqsd``: the same entry point as the ``s3sqsd`` console script."""

import sys

from s3sqsd.cli import main

sys.exit(main())
