{{/* The chart name: app.kubernetes.io/name of serve's objects. */}}
{{- define "chaosgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The full name of serve's objects: the release name when it contains the chart name. */}}
{{- define "chaosgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The labels every object of the chart carries (besides app.kubernetes.io/name). */}}
{{- define "chaosgate.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "chaosgate.tag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chaosgate
{{- end -}}

{{/* Labels of serve's objects. */}}
{{- define "chaosgate.labels" -}}
app.kubernetes.io/name: {{ include "chaosgate.name" . }}
{{ include "chaosgate.commonLabels" . }}
{{- end -}}

{{/* serve's selector: the same as deploy/serve's. */}}
{{- define "chaosgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chaosgate.name" . }}
{{- end -}}

{{/* Labels of the aggregator's objects of one arm (root context as .root, arm as .track). */}}
{{- define "chaosgate.aggregatorLabels" -}}
app.kubernetes.io/name: aggregator
track: {{ .track }}
{{ include "chaosgate.commonLabels" .root }}
{{- end -}}

{{/* The aggregator's selector of one arm: the same as deploy/aggregator's and chaosgate's default --canary-selector/--control-selector. */}}
{{- define "chaosgate.aggregatorSelector" -}}
app.kubernetes.io/name: aggregator
track: {{ .track }}
{{- end -}}

{{- define "chaosgate.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{- define "chaosgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "chaosgate.tag" .) -}}
{{- end -}}

{{- define "chaosgate.serviceAccountName" -}}
{{- default (include "chaosgate.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The namespace serve's runs act in: the first of targetNamespaces. */}}
{{- define "chaosgate.runNamespace" -}}
{{- if not .Values.targetNamespaces -}}
{{- fail "targetNamespaces: at least one namespace is needed with target k8s (hint: the namespace of the canary and control workloads, e.g. chaosgate-demo)" -}}
{{- end -}}
{{- first .Values.targetNamespaces -}}
{{- end -}}

{{- define "chaosgate.aggregatorNamespace" -}}
{{- default (first .Values.targetNamespaces) .Values.aggregator.namespace -}}
{{- end -}}

{{/* The Secret holding tokens.yaml, or nothing. */}}
{{- define "chaosgate.tokensSecret" -}}
{{- if .Values.tokens.existingSecret -}}
{{- .Values.tokens.existingSecret -}}
{{- else if .Values.tokens.create -}}
{{- printf "%s-tokens" (include "chaosgate.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "chaosgate.scheme" -}}
{{- if .Values.tls.enabled }}HTTPS{{ else }}HTTP{{ end -}}
{{- end -}}
