"""A Prometheus for `vlmop local`: Debian's `prometheus` run by the local kubelet as a Deployment in
the `monitoring` namespace behind the Service the examples name (`prometheus-operated`, as the
Prometheus Operator calls it), scraping every local pod's `http` and `metrics` ports from the targets
file the kubelet keeps (file_sd: pod IPs, with namespace and pod labels as kubernetes_sd gives them).

This machine has no GPU and no DCGM exporter: recording rules write each serving pod's busy fraction
(the vision server's request-seconds per second, vLLM's running requests, capped at 1) under the DCGM
exporter's name, DCGM_FI_DEV_GPU_UTIL in percent, so that the autoscaler's default query has a signal.
It is a stand-in that says so in its rule group's name, not a GPU measurement."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from kubernetes.client import AppsV1Api, CoreV1Api

from vlmop.operator.localapi.cluster import LocalCluster

NAMESPACE, SERVICE, PORT = "monitoring", "prometheus-operated", 9090


RULES = """groups:
  - name: vlmop-local-gpu-utilisation-stand-in
    rules:
      - record: DCGM_FI_DEV_GPU_UTIL
        expr: >-
          100 * clamp_max(sum by (namespace, pod) (rate(vlmop_serving_request_seconds_sum[20s]))
          or sum by (namespace, pod) ({__name__="vllm:num_requests_running"}), 1)
"""


def config(targets: Path) -> str:
    return (
        "global: {scrape_interval: 2s, evaluation_interval: 2s}\n"
        "rule_files: [rules.yml]  # beside this file\n"
        "scrape_configs:\n"
        "  - job_name: local-pods\n"
        f"    file_sd_configs: [{{files: ['{targets}'], refresh_interval: 2s}}]\n"
    )


def manifests(targets: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "prometheus"}
    container = {
        "name": "prometheus",
        "image": "prom/prometheus",
        "command": ["prometheus", "--config.file=/etc/prometheus/prometheus.yml",
                    "--storage.tsdb.path=/prometheus", f"--web.listen-address=$(POD_IP):{PORT}"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "web", "containerPort": PORT}],
        "readinessProbe": {"httpGet": {"path": "/-/ready", "port": "web"}, "periodSeconds": 2},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/prometheus"},
                         {"name": "data", "mountPath": "/prometheus"}],
    }  # fmt: skip
    volumes = [{"name": "config", "configMap": {"name": "prometheus"}}, {"name": "data", "emptyDir": {}}]
    deployment = {
        "metadata": {"name": "prometheus", "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [container], "volumes": volumes}}},
    }  # fmt: skip
    data = {"prometheus.yml": config(targets), "rules.yml": RULES}
    config_map = {"metadata": {"name": "prometheus"}, "data": data}
    service = {
        "metadata": {"name": SERVICE},
        "spec": {"selector": labels, "ports": [{"port": PORT, "targetPort": "web"}]},
    }
    return config_map, deployment, service


def install(cluster: LocalCluster, targets: Path) -> None:
    config_map, deployment, service = manifests(targets)
    core = CoreV1Api(cluster.client)
    core.create_namespaced_config_map(NAMESPACE, cast(Any, config_map))
    AppsV1Api(cluster.client).create_namespaced_deployment(NAMESPACE, cast(Any, deployment))
    core.create_namespaced_service(NAMESPACE, cast(Any, service))
