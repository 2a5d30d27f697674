# shellcheck shell=bash
# Shared by the infra/ scripts (sourced, never run). Bash, with `set -euo pipefail` set by the caller.
#
# Settings (environment):
#   REPLENISH_INFRA_DIR      state (data, logs, pid files, passwords); default <repo>/.infra-state
#   REPLENISH_INFRA_TIMEOUT  seconds to wait for a server to answer; default 120
#   REPLENISH_VENV           the project's virtual environment; default <repo>/.venv

infra_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
infra_state="${REPLENISH_INFRA_DIR:-$infra_root/.infra-state}"
infra_timeout="${REPLENISH_INFRA_TIMEOUT:-120}"
infra_venv="${REPLENISH_VENV:-$infra_root/.venv}"

say() { echo "==> $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

need_root_for() {
  [ "$(id -u)" -eq 0 ] || die "$1 needs root (apt-get / running a server as the postgres user); run it as root"
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True when process $1 is alive and its command line contains $2.
pid_is() {
  local pid="$1" needle="$2"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$needle"
}

# The venv's python if it has confluent-kafka, else nothing.
venv_python_with_kafka() {
  if [ -x "$infra_venv/bin/python" ] && "$infra_venv/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
    echo "$infra_venv/bin/python"
  fi
}

apt_install() {
  need_root_for "installing $*"
  say "apt-get install -y $*"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; then
    say "apt-get install failed; running apt-get update once and trying again"
    apt-get update -q >&2 || die "apt-get update failed: Debian's package registry is not reachable"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 \
      || die "apt-get install -y $* failed (see above)"
  fi
}
