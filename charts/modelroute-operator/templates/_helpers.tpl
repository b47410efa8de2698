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

{{/* The name of the kopf peering object; fixed in the operator (Settings.peering_name). */}}
{{- define "modelroute-operator.peeringName" -}}
modelroute-operator
{{- end }}

{{/*
RBAC rules for one scope: exactly what the operator calls (operator/modelroute/kube.py) plus
what kopf does for it (watches, events, peering). No wildcards. Call with (dict "root" $ "peering" "kopfpeerings"|"clusterkopfpeerings"|"").
*/}}
{{- define "modelroute-operator.rules" -}}
{{- $root := .root -}}
# kopf lists and watches ModelRoutes; the operator never writes their spec, labels or finalizers.
- apiGroups: ["modelroute.dev"]
  resources: ["modelroutes"]
  verbs: ["list", "watch"]
# Status is written through the status subresource only (JSON merge patch).
- apiGroups: ["modelroute.dev"]
  resources: ["modelroutes/status"]
  verbs: ["patch"]
# Target and stable Services: watched; the stable Service is created and patched.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
# API keys referenced by authSecretRef: read only (watched so key rotation is noticed).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# FailedOver / FailedBack events, and kopf's own warnings.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if .peering }}
# Leader election: kopf peering. Listed and watched; only our own peering object is written.
- apiGroups: ["kopf.dev"]
  resources: [{{ .peering | quote }}]
  verbs: ["list", "watch"]
- apiGroups: ["kopf.dev"]
  resources: [{{ .peering | quote }}]
  resourceNames: [{{ include "modelroute-operator.peeringName" $root | quote }}]
  verbs: ["get", "patch"]
{{- end }}
{{- end }}
