{{- define "tailrace.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tailrace.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "tailrace.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "tailrace.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "tailrace.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tailrace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tailrace.labels" -}}
{{ include "tailrace.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "tailrace.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tailrace.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The configuration as it runs: config, with the Promtail takeover when enabled. */}}
{{- define "tailrace.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if .Values.promtailTakeover.enabled }}
{{- $_ := set $config.positions "takeover_from" .Values.promtailTakeover.positionsFile }}
{{- end }}
{{- toYaml $config }}
{{- end }}
