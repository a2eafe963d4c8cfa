#!/usr/bin/env bash
# A local cluster with vlmop installed, for users with Docker: creates a kind cluster, builds the
# operator image, loads it into the cluster, installs the chart (Helm SDK, no helm binary), and
# prints the KUBECONFIG to run the e2e scenarios with:
#   e2e/kind-up.sh && KUBECONFIG=$PWD/build/kind.kubeconfig .venv/bin/python -m pytest e2e
# Needs: docker, kind (https://kind.sigs.k8s.io), and the dev install (.venv with helm-python-sdk).
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=${CLUSTER:-vlmop}
IMAGE=ghcr.io/vlmop/operator:dev
mkdir -p build
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
kind get kubeconfig --name "$CLUSTER" > build/kind.kubeconfig
docker build -f images/operator/Dockerfile -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"
KUBECONFIG=$PWD/build/kind.kubeconfig .venv/bin/python e2e/install.py --image "$IMAGE"
echo "export KUBECONFIG=$PWD/build/kind.kubeconfig"
