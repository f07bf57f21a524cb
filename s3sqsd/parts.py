"""The part sizes of a multipart object, which the per-part checks of verify.py need.

A composite checksum (``value-N``) and a multipart ETag (``hex-N``) are digests of the parts'
digests, so the bytes must be cut exactly where the uploader cut them. S3 gives a part's size
as the Content-Length of ``HeadObject`` with ``PartNumber=n`` (it needs only s3:GetObject;
``GetObjectAttributes`` would give all sizes in one call but needs a permission of its own, and
not every S3-compatible store has it).

Uploaders cut every part but the last at one size (the AWS CLI, boto3, the SDKs' transfer
managers, rclone), so one HEAD of part 1 gives the layout: N-1 parts of its size and the rest.
``layout`` returns that assumption when it fits the object's length, else asks S3 for every
part (``exact_layout``). When a check fails on an assumed layout, the fetcher asks for the exact
one and checks the file again (verify.PartsMismatchError): an object cut unevenly costs N more
HEADs, never a false failure.

The sizes only decide where the bytes are cut; the digest they must give comes from the very
answer the bytes came with. So sizes of another object (overwritten in between) can only fail
the check (retried), never pass wrong bytes. The HEADs are pinned to the object's
``VersionId`` when it has one; they are not pinned by ``IfMatch`` on the ETag, because stores
disagree on which ETag a part's HEAD answers with (moto: the part's own; AWS: the object's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from s3sqsd.checksums import HostChecksums
from s3sqsd.errors import FetchError, PartsMismatchError
from s3sqsd.events import ObjectCreated
from s3sqsd.verify import (
    REMOTE_ERRORS,
    Digests,
    Expected,
    remote_error,
    s3_url,
    verify_file,
)


@dataclass(frozen=True, slots=True)
class Layout:
    """Part sizes in part order; ``exact`` when S3 gave every size (not assumed equal)."""

    sizes: tuple[int, ...]
    exact: bool


def pin(*, version_id: str | None, etag: str | None) -> dict[str, Any]:
    """The request parameters that pin a GET to one object: its version, else its ETag."""
    if version_id:
        return {"VersionId": version_id}
    if etag:
        return {"IfMatch": f'"{etag}"'}
    return {}


def _part_pin(pinned: dict[str, Any]) -> dict[str, Any]:
    """What pins a part's HEAD: the version only (see the module docstring)."""
    return {"VersionId": pinned["VersionId"]} if "VersionId" in pinned else {}


def equal_layout(*, total: int, parts: int, first: int) -> tuple[int, ...] | None:
    """N-1 parts of ``first`` bytes and the rest (pure); None when that cannot be the layout."""
    if parts == 1:
        return (total,) if first == total else None
    rest = total - (parts - 1) * first
    if first <= 0 or not 0 < rest <= first:
        return None
    return (first,) * (parts - 1) + (rest,)


def layout(
    *, s3: Any, obj: ObjectCreated, total: int, parts: int, pinned: dict[str, Any]
) -> Layout:
    """The part sizes of ``obj``: assumed from part 1 when they fit, else exact."""
    if parts == 1:
        return Layout((total,), exact=True)
    first = _head_part(s3, obj, 1, parts, pinned)
    sizes = equal_layout(total=total, parts=parts, first=first)
    if sizes is not None:
        return Layout(sizes, exact=False)
    return exact_layout(s3=s3, obj=obj, total=total, parts=parts, pinned=pinned)


def exact_layout(
    *,
    s3: Any,
    obj: ObjectCreated,
    total: int,
    parts: int,
    pinned: dict[str, Any],
) -> Layout:
    """Every part's size from its own HEAD; they must add up to ``total``."""
    sizes = tuple(_head_part(s3, obj, number, parts, pinned) for number in range(1, parts + 1))
    if sum(sizes) != total:
        raise FetchError(
            f"{s3_url(obj)}: the {parts} parts S3 lists add up to {sum(sizes)} bytes, "
            f"not the object's {total} (changed during the download?)"
        )
    return Layout(sizes, exact=True)


def _head_part(s3: Any, obj: ObjectCreated, number: int, parts: int, pinned: dict[str, Any]) -> int:
    try:
        head = s3.head_object(
            Bucket=obj.bucket, Key=obj.key, PartNumber=number, **_part_pin(pinned)
        )
    except REMOTE_ERRORS as exc:
        raise remote_error(exc, obj) from exc
    count = head.get("PartsCount")
    if count is None:
        raw = head.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-mp-parts-count")
        count = int(raw) if isinstance(raw, str) and raw.isdigit() else None
    if count is not None and count != parts:
        raise FetchError(
            f"{s3_url(obj)}: S3 reports {count} parts, the checksum or ETag {parts} "
            "(changed during the download?)"
        )
    size = head.get("ContentLength")
    if not isinstance(size, int) or size < 0:
        raise FetchError(f"HEAD {s3_url(obj)} part {number} gave no Content-Length")
    return size


def check_again(
    error: PartsMismatchError,
    *,
    s3: Any,
    obj: ObjectCreated,
    fd: int,
    expected: Expected,
    host: HostChecksums,
    assumed: Layout,
    pinned: dict[str, Any],
    chunk_size: int,
    cancel: Any,
) -> str:
    """A per-part check failed on ``assumed`` sizes: check the file ``fd`` again on the exact
    ones, if they differ. Raises ``error`` when they are the same (the bytes are wrong);
    returns ``verified_by`` when the file matches S3's own sizes."""
    if assumed.exact:
        raise error
    exact = exact_layout(
        s3=s3, obj=obj, total=sum(assumed.sizes), parts=len(assumed.sizes), pinned=pinned
    )
    if exact.sizes == assumed.sizes:
        raise error
    digests = Digests(expected, host=host, layout=exact.sizes)
    return verify_file(fd, digests, chunk_size=chunk_size, cancel=cancel, obj=obj)
