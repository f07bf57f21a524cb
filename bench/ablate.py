"""Which part of s3sqsd's per-file work costs what, measured by taking it out.

    python -m bench.ablate --variant fetch --rounds 3
    python -m bench.ablate --variant fsync,log --rounds 5

Copies the working tree twice into a scratch folder: one copy as it is, one with the parts
named by ``--variant`` taken out of the daemon's source. Then it runs workload a (small files,
loopback; ``limit`` and ``s3sqsd``) with ``python -m bench.run`` from each copy in turn,
reversing the order every other round (runs on a noisy machine have an order effect), and
prints s3sqsd's throughput and CPU per file as ratios to the floor's in the same run, per round
and as medians. The ablated daemon is not a product: it gives up what the product is for (that
is the point), and exists only in the scratch folder.

Variants (comma-separated to combine):

- ``fsync``: no fsync of the file or of its directory;
- ``fetch``: ``Fetcher.fetch`` replaced by the floor's local work (GET, write the final path,
  close: no temp file, checks, provenance, fsync, rename);
- ``log``: no ``object.downloaded`` line per file;
- ``checksum``: botocore does not validate the response checksum (and s3sqsd does not ask
  for one). Since s3sqsd verifies the object itself (verify.py), an object without a
  checksum is then verified by its MD5 ETag: this variant now measures "MD5 instead of the
  S3 checksum", not "no check"; the figures in bench/results were taken before that.

Each edit must match the source exactly once, or the script stops before measuring anything:
an edit that no longer applies would measure the unchanged daemon twice.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# variant -> [(file, old text, new text)]
EDITS: dict[str, list[tuple[str, str, str]]] = {
    "fsync": [
        (
            "s3sqsd/staging.py",
            "        try:\n            os.fsync(self.fd)\n",
            "        try:\n            pass  # ablated: os.fsync(self.fd)\n",
        ),
        (
            "s3sqsd/dirsync.py",
            "        os.fsync(fd)\n",
            "        pass  # ablated: os.fsync(fd)\n",
        ),
    ],
    "fetch": [
        (
            "s3sqsd/fetcher.py",
            "        started = time.monotonic()\n"
            "        path = local_path(self._root, obj.key, bucket=obj.bucket, "
            "key_path=key_path)\n",
            "        started = time.monotonic()\n"
            "        if True:  # ablated: the floor's local work\n"
            "            s3 = self._download._s3\n"
            "            body = s3.get_object(Bucket=obj.bucket, Key=obj.key)['Body']\n"
            "            final = self._root / obj.key\n"
            "            with open(final, 'wb') as handle:\n"
            "                while chunk := body.read(1 << 20):\n"
            "                    handle.write(chunk)\n"
            "            return FetchResult(FetchOutcome.DOWNLOADED, final, 0, None, None, 0)\n"
            "        path = local_path(self._root, obj.key, bucket=obj.bucket, "
            "key_path=key_path)\n",
        ),
    ],
    "log": [
        (
            "s3sqsd/delivery.py",
            '    verified), stale, duplicate or folder marker."""\n',
            '    verified), stale, duplicate or folder marker."""\n    return  # ablated\n',
        ),
    ],
    "checksum": [
        (
            "s3sqsd/aws.py",
            "        max_pool_connections=s3_pool_size(config),\n",
            "        max_pool_connections=s3_pool_size(config),\n"
            "        response_checksum_validation='when_required',  # ablated\n",
        ),
        (
            "s3sqsd/download.py",
            '"Key": obj.key, "ChecksumMode": "ENABLED"}',
            '"Key": obj.key}  # ablated: no ChecksumMode',
        ),
    ],
}


def copy_tree(dest: Path, names: list[str] | None = None) -> None:
    """``names`` (paths under the repo), by default every tracked file of the working tree, as
    they are now (uncommitted edits included)."""
    if names is None:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True
        ).stdout.split(b"\0")
        names = [name.decode() for name in listed if name]
    for name in names:
        source = REPO / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())


def ablate(tree: Path, variants: list[str]) -> None:
    for variant in variants:
        for name, old, new in EDITS[variant]:
            path = tree / name
            text = path.read_text(encoding="utf-8")
            if text.count(old) != 1:
                raise SystemExit(
                    f"variant {variant}: the edit of {name} matches {text.count(old)} times, "
                    "not once; update EDITS in bench/ablate.py"
                )
            path.write_text(text.replace(old, new), encoding="utf-8")


def ratios(result: Path) -> tuple[float, float]:
    # Not run.py's row lookup: importing run.py pulls in boto3 and the emulator's support code,
    # and this module must import without them (the package build runs its unit test).
    rows = {row["contestant"]: row for row in json.loads(result.read_text())["rows"]}
    ours, floor = rows["s3sqsd"], rows["limit"]
    return (
        ours["files_per_s"] / floor["files_per_s"],
        ours["cpu_ms_per_file"] / floor["cpu_ms_per_file"],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--variant", required=True, help=f"comma-separated: {', '.join(EDITS)}")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    variants = args.variant.split(",")
    for variant in variants:
        if variant not in EDITS:
            parser.error(f"unknown variant {variant!r}; known: {', '.join(EDITS)}")
    found: dict[str, list[tuple[float, float]]] = {"as is": [], "ablated": []}
    with tempfile.TemporaryDirectory(prefix="s3sqsd-ablate-") as scratch:
        trees = {"as is": Path(scratch) / "as-is", "ablated": Path(scratch) / "ablated"}
        for tree in trees.values():
            copy_tree(tree)
        ablate(trees["ablated"], variants)
        for round_ in range(args.rounds):
            order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
            for label in order:
                result = Path(scratch) / f"{label.replace(' ', '-')}-{round_}.json"
                command = [
                    sys.executable,
                    "-m",
                    "bench.run",
                    "--workloads",
                    "a",
                    "--networks",
                    "loopback",
                    "--contestants",
                    "limit,s3sqsd",
                    "--json",
                    str(result),
                ]
                subprocess.run(command, cwd=trees[label], check=True, capture_output=True)
                throughput, cpu = ratios(result)
                found[label].append((throughput, cpu))
                print(
                    f"round {round_ + 1} {label:8s} files/s {throughput:.2f} x limit, "
                    f"CPU/file {cpu:.2f} x limit",
                    flush=True,
                )
    print(f"\nvariant {args.variant}, {args.rounds} rounds, medians:")
    for label, values in found.items():
        throughput = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"  {label:8s} files/s {throughput:.2f} x limit, CPU/file {cpu:.2f} x limit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
