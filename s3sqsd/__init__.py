"""s3sqsd: download objects announced by S3 event notifications on SQS into a local folder."""

__version__ = "0.1.0"
