{{/* The chart name, or nameOverride. */}}
{{- define "modelroute-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of every object: fullnameOverride, or <release>-<chart> (just <release> when it already contains the chart name). */}}
{{- define "modelroute-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "modelroute-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "modelroute-operator.labels" -}}
helm.sh/chart: {{ include "modelroute-operator.chart" . }}
{{ include "modelroute-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelroute
{{- end }}

{{/* Labels that select the operator Pods (immutable once installed). */}}
{{- define "modelroute-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelroute-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels that select one Deployment's Pods, from (dict "root" $ "shard" NAME): the main
Deployment's (shard "") are selectorLabels; a shard's Pods are their own instance
(<release>-<shard>) with a modelroute.dev/shard label, so no other Deployment, PodDisruptionBudget
or metrics Service of the release selects them.
*/}}
{{- define "modelroute-operator.podSelectorLabels" -}}
{{- if .shard }}
app.kubernetes.io/name: {{ include "modelroute-operator.name" .root }}
app.kubernetes.io/instance: {{ printf "%s-%s" .root.Release.Name .shard }}
modelroute.dev/shard: {{ .shard }}
{{- else }}
{{- include "modelroute-operator.selectorLabels" .root }}
{{- end }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "modelroute-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelroute-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository:tag[@digest]; the tag defaults to the chart appVersion and is never "latest". */}}
{{- define "modelroute-operator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if eq $tag "latest" }}
{{- fail "image.tag must be a pinned version, not \"latest\"" }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The name of the leader-election Lease (in the release namespace, where the Pods run). */}}
{{- define "modelroute-operator.leaseName" -}}
{{- .Values.leaderElection.leaseName }}
{{- end }}

{{/*
RBAC rules for one watched scope: exactly what the operator calls (operator/modelroute/kube/)
plus what kopf does for it (watches, events). No wildcards. The leader-election Lease has its
own Role in the release namespace (rbac.yaml).
*/}}
{{- define "modelroute-operator.rules" -}}
# kopf lists and watches ModelRoutes; the operator never writes their spec, labels or finalizers.
# get: with --label-selector, to tell a route relabelled to another shard from a deleted one;
# before adopting a retained routing object (spec.routing.adopt), whether its route is gone.
- apiGroups: ["modelroute.dev"]
  resources: ["modelroutes"]
  verbs: ["get", "list", "watch"]
# Status is written through the status subresource only (JSON merge patch).
- apiGroups: ["modelroute.dev"]
  resources: ["modelroutes/status"]
  verbs: ["patch"]
{{- include "modelroute-operator.driverRules" . }}
# API keys referenced by authSecretRef: read only (watched so key rotation is noticed).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# FailedOver / FailedBack events, and kopf's own warnings.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
The routing drivers' kinds, for the drivers in routing.drivers only (operator/modelroute/routing/:
each DriverInfo's kind and reads; tests/unit/test_chart.py derives the expected rules from that
registry). A driver's routing object is read, watched, created and patched, and deleted when a
spec change moves the route to another routing object (routing/handover.py); a kind it only reads
is read and watched ("reads": a list of (list "<group>" "<plural>")). Service driver: target and
stable Services. HTTPRoute driver: the HTTPRoutes it owns (gateway.networking.k8s.io).
AIGatewayRoute driver: the AIGatewayRoutes it owns, and the AIServiceBackends they reference
(aigateway.envoyproxy.io; never the HTTPRoutes the AI Gateway generates).
*/}}
{{- define "modelroute-operator.driverRules" -}}
{{- $catalog := dict
  "Service" (dict "group" "" "kind" "services" "reads" (list))
  "HTTPRoute" (dict "group" "gateway.networking.k8s.io" "kind" "httproutes" "reads" (list))
  "AIGatewayRoute" (dict "group" "aigateway.envoyproxy.io" "kind" "aigatewayroutes" "reads" (list (list "aigateway.envoyproxy.io" "aiservicebackends")))
}}
{{- range $name := .Values.routing.drivers }}
{{- $driver := get $catalog $name }}
{{- if not $driver }}
{{- fail (printf "routing.drivers: unknown driver %q (available: %s)" $name (keys $catalog | sortAlpha | join ", ")) }}
{{- end }}
# Routing driver {{ $name }}: its routing object.
- apiGroups: [{{ $driver.group | quote }}]
  resources: [{{ $driver.kind | quote }}]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- range $driver.reads }}
# Routing driver {{ $name }}: a kind it reads.
- apiGroups: [{{ index . 0 | quote }}]
  resources: [{{ index . 1 | quote }}]
  verbs: ["get", "list", "watch"]
{{- end }}
{{- end }}
{{- end }}

{{/* An alert's runbook_url annotation, when metrics.prometheusRule.runbookUrl is set: (list $rule "anchor"). */}}
{{- define "modelroute-operator.runbook" -}}
{{- $rule := index . 0 }}
{{- with $rule.runbookUrl }}
runbook_url: {{ printf "%s#%s" . (index $ 1) | quote }}
{{- end }}
{{- end }}
