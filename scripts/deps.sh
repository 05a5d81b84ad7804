#!/bin/bash
# Install what coffer needs to build and test on Debian 12. Idempotent.
set -eu
PKGS="build-essential autoconf automake libtool pkg-config libsodium-dev libsystemd-dev libcap-dev
libsqlite3-dev libpam0g-dev libcmocka-dev clang python3 util-linux procps
libpam-wrapper libpamtest0-dev pamtester libpam-modules openssh-server openssh-client
python3-jwt python3-cryptography systemd strace systemd-container debootstrap"
missing=
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "installing:$missing" >&2
$SUDO apt-get update -qq
# Packages with daemons (openssh-server) must not start them: the tests run
# their own instances.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 0755 /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
