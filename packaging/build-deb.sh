#!/bin/sh
# Build the s3sqsd .deb from this checkout into dist/ (or $S3SQSD_DEB_OUTDIR).
#
# The repository root is the upstream tree; packaging/debian becomes debian/ in a temporary
# copy, so no top-level debian/ ever appears in the repository. Build dependencies:
# packaging/build-deps.sh --build.
#
# Environment:
#   S3SQSD_DEB_OUTDIR   where the .deb goes (default: dist/ in the repository)
#   S3SQSD_DEB_VERSION  build under another Debian version (the system tests use it to make
#                       an "upgrade" package); the changelog in the copy is rewritten
#   DEB_BUILD_OPTIONS, DEB_BUILD_PROFILES  passed through (e.g. nocheck)
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${S3SQSD_DEB_OUTDIR:-$ROOT/dist}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/s3sqsd-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
TREE=$WORK/s3sqsd

mkdir -p "$TREE" "$OUTDIR"
# Copy what git would commit (tracked + new, not ignored) so local build output, caches and
# virtualenvs never end up in the package; without git, copy everything but those.
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
	git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
		| (cd "$ROOT" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) \
		| (cd "$ROOT" && tar --null -T - -cf -) | tar -xf - -C "$TREE"
else
	(cd "$ROOT" && tar --exclude=./.git --exclude=./dist --exclude=./build \
		--exclude='./.venv*' --exclude='*/__pycache__' -cf - .) | tar -xf - -C "$TREE"
fi
rm -rf "$TREE/debian"
cp -a "$TREE/packaging/debian" "$TREE/debian"

if [ -n "${S3SQSD_DEB_VERSION:-}" ]; then
	sed -i "1s/^s3sqsd ([^)]*)/s3sqsd ($S3SQSD_DEB_VERSION)/" "$TREE/debian/changelog"
fi

# Debian's python3 must come first: this machine may have pyenv or a virtualenv on PATH.
(cd "$TREE" && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$WORK" LANG=C.UTF-8 \
	DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-}" DEB_BUILD_PROFILES="${DEB_BUILD_PROFILES:-}" \
	dpkg-buildpackage --build=binary --no-sign)

for deb in "$WORK"/*.deb; do
	cp "$deb" "$OUTDIR/"
	echo "built $OUTDIR/$(basename "$deb")"
done
