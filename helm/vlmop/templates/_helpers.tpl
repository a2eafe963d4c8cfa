{{/* The release's name for every object of the chart (at most 63 characters). */}}
{{- define "vlmop.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vlmop.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "vlmop.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vlmop.serviceAccount" -}}
{{- default (include "vlmop.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The rules the operator needs; tests/unit/test_chart.py derives the same set from the code. */}}
{{- define "vlmop.rules" -}}
- apiGroups: [vlmop.io]
  resources: [pretrainjobs, cascaderljobs, dvddeployments]
  verbs: [list, watch, patch]
- apiGroups: [vlmop.io]
  resources: [pretrainjobs/status, cascaderljobs/status, dvddeployments/status]
  verbs: [patch]
- apiGroups: [vlmop.io]
  resources: [pretrainjobs, cascaderljobs]
  verbs: [delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, create, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [scheduling.volcano.sh, scheduling.x-k8s.io]
  resources: [podgroups]
  verbs: [create, delete]
- apiGroups: [scheduling.k8s.io]
  resources: [workloads, podgroups, compositepodgroups]
  verbs: [create, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
