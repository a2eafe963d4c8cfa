"""Install (or upgrade) the vlmop chart into the cluster KUBECONFIG names, with the Helm SDK (no helm
binary needed): python e2e/install.py [--set-image REPO:TAG] [--namespace NS]."""

from __future__ import annotations

import argparse
from pathlib import Path

import helm_python as helm

CHART = Path(__file__).resolve().parents[1] / "helm" / "vlmop"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--namespace", default="vlmop-system")
    p.add_argument("--image", default="ghcr.io/vlmop/operator:0.1.0", help="operator image REPO:TAG")
    p.add_argument("--release", default="vlmop")
    args = p.parse_args()
    repository, _, tag = args.image.rpartition(":")
    values = {"image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}}
    config = helm.Config(namespace=args.namespace)
    installed = {release.get("name") for release in config.list(name_filter=args.release)}
    if args.release in installed:
        config.upgrade(CHART, args.release, values, namespace=args.namespace, wait="watcher", timeout=300)
    else:
        config.install(CHART, args.release, values, namespace=args.namespace, create_namespace=True,
                       wait="watcher", timeout=300)  # fmt: skip
    print(f"installed {args.release} in {args.namespace}")


if __name__ == "__main__":
    main()
