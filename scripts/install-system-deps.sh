#!/usr/bin/env bash
# Installs the Debian packages the test suite needs (the SSH-host fixtures in
# tests/sshhosts.py run real OpenSSH servers inside network namespaces; the
# sidebar's browser test drives Debian's chromium with Playwright; the
# slurm_cluster fixture in tests/slurmcluster.py runs a real single-node Slurm
# with its own munged; bench/bench_replicas.py compares with rsync).
# Idempotent and quiet: exits at once when everything is already installed.
# When something is missing and we are not root, lists it and exits 1.
set -euo pipefail

PACKAGES=(openssh-server openssh-client iproute2 python3-venv bubblewrap chromium slurmctld slurmd slurm-client munge rsync)

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done
# The packages can be present while a binary is not (e.g. a trimmed image).
for bin in /usr/sbin/sshd /usr/bin/ssh /usr/bin/ssh-keygen; do
    [ -x "$bin" ] || { missing+=(openssh-server openssh-client); break; }
done
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
[ -x /usr/sbin/slurmctld ] || missing+=(slurmctld)
[ -x /usr/sbin/slurmd ] || missing+=(slurmd)
[ -x /usr/sbin/munged ] || missing+=(munge)
[ -x /usr/bin/sbatch ] || missing+=(slurm-client)

[ "${#missing[@]}" -eq 0 ] && exit 0

# Deduplicate while keeping order.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')

if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: missing Debian packages: ${missing[*]}" >&2
    echo "install-system-deps: run as root: apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
install() {
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
# Only refresh the package lists when the install fails without them (or
# there are none yet).
if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' -e '^auxfiles$')" ] || ! install 2>/dev/null; then
    apt-get update -qq >/dev/null
    install
fi
