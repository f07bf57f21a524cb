"""One S3 object for every bucket: each call goes to the client of its ``Bucket``.

A bucket may have an identity and guards of its own (access.py); each such set has its own boto3
client, with the guards added by aws.py. Code that calls S3 (the fetcher, ranged GETs, listings,
source deletes) holds this object as it would hold one client, and cannot pick the wrong one:
the choice rides on the ``Bucket`` every S3 call names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class BucketClients:
    """The S3 operations s3sqsd uses, each sent to the client of the call's bucket."""

    def __init__(self, *, default: Any, by_bucket: Mapping[str, Any]) -> None:
        self._default = default
        self._by_bucket = dict(by_bucket)

    def for_bucket(self, bucket: str) -> Any:
        """The client that calls on ``bucket`` use."""
        return self._by_bucket.get(bucket, self._default)

    def clients(self) -> tuple[Any, ...]:
        """Each distinct client, the default first."""
        return tuple({id(c): c for c in (self._default, *self._by_bucket.values())}.values())

    @property
    def exceptions(self) -> Any:
        """The modelled error classes (the same for every client of the service)."""
        return self._default.exceptions

    def get_object(self, **params: Any) -> Any:
        return self.for_bucket(params["Bucket"]).get_object(**params)

    def head_object(self, **params: Any) -> Any:
        return self.for_bucket(params["Bucket"]).head_object(**params)

    def list_objects_v2(self, **params: Any) -> Any:
        return self.for_bucket(params["Bucket"]).list_objects_v2(**params)

    def delete_object(self, **params: Any) -> Any:
        return self.for_bucket(params["Bucket"]).delete_object(**params)

    def head_bucket(self, **params: Any) -> Any:
        return self.for_bucket(params["Bucket"]).head_bucket(**params)
