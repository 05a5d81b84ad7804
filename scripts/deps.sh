#!/bin/bash
# Install what coffer needs to build and test on Debian 12. Idempotent.
set -eu
PKGS="build-essential autoconf automake libtool pkg-config libsodium-dev libsystemd-dev libcap-dev
libsqlite3-dev libpam0g-dev libcmocka-dev clang python3 util-linux procps"
missing=
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "installing:$missing" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
