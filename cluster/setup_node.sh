#!/usr/bin/env bash
# Install MFER on a Ray node that runs without the container image (cluster/gcp.yaml,
# cluster/onprem.yaml): a venv with the pinned torch pair, the project wheel that the launcher's
# file_mounts copied to ~/mfer-wheels, ray[default] (dashboard, job server, autoscaler) and
# facenet-pytorch without its stale pins. `ray up` runs it on every node start: it is idempotent.
set -euo pipefail

VENV="$HOME/venv"
WHEELS="$HOME/mfer-wheels"

if [ ! -x "$VENV/bin/python" ]; then
  # Debian/Ubuntu ship venv support separately from python3.
  python3 -m venv "$VENV" 2>/dev/null \
    || { sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv && python3 -m venv "$VENV"; }
fi

# The launcher runs every later command (`ray start`, `ray exec`, job drivers) in a login shell:
# activate the venv there, and token auth, which then reads the token from ~/.ray/auth_token.
if ! grep -q '# mfer-node' ~/.bashrc; then
  cat >> ~/.bashrc <<'EOF'
source ~/venv/bin/activate  # mfer-node
export RAY_AUTH_MODE=token  # mfer-node
EOF
fi

install() { "$VENV/bin/pip" install -q "$@"; }
install torch==2.14.1 torchvision==0.29.1
install "$WHEELS"/mfer_platform-*.whl "ray[default,tune]==2.60.0"
# facenet-pytorch pins torch<2.3 and numpy<2 but works with this stack (see cluster/Dockerfile).
install --no-deps facenet-pytorch==2.6.0
