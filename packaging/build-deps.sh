#!/bin/sh
# Install what `make deb`, lintian and the system tests (tests/system/) need on Debian 12.
# Run as root. CI runs this before the system tests; developers run it once.
#   packaging/build-deps.sh            build + lint + system-test tools
#   packaging/build-deps.sh --build    only what `make deb` needs
set -eu

BUILD="debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools
python3-boto3 python3-pytest python3-pythonjsonlogger python3-sdnotify python3-yaml
build-essential dpkg-dev git"
LINT="lintian"
SYSTEM="mmdebstrap systemd-container util-linux"

case "${1:-}" in
--build) PACKAGES="$BUILD" ;;
"") PACKAGES="$BUILD $LINT $SYSTEM" ;;
*) echo "usage: $0 [--build]" >&2; exit 2 ;;
esac

export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # word splitting of the package lists is intended
if ! dpkg-query -W -f='${Status}\n' $PACKAGES 2>/dev/null | grep -qv '^install ok installed$' \
	&& [ "$(dpkg-query -W -f='${Status}\n' $PACKAGES 2>/dev/null | wc -l)" -eq "$(echo $PACKAGES | wc -w)" ]; then
	exit 0  # everything is installed already: no apt-get update, no network
fi
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $PACKAGES
