#!/bin/sh
# System packages the full test suite uses (Debian). Installs them when run as root with apt-get;
# otherwise says what is missing (the tests that need them skip with that reason).
#   openssh-server         a real sshd on 127.0.0.1 for the SSH transport tests
#   openssh-client         ssh-keygen for the test keys
#   qemu-user-static       the emulated Raspberry Pi (arm64 userland) tests
#   mmdebstrap             builds that arm64 userland
#   dataset-fashion-mnist  the full Fashion-MNIST (a 10k subset ships with hwnas)
set -eu
PACKAGES="openssh-server openssh-client qemu-user-static mmdebstrap dataset-fashion-mnist"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    echo "tests/system-deps.sh: not installing (need root and apt-get):$missing" >&2
fi
