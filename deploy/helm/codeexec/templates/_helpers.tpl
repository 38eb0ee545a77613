{{/* The chart's name, and the release's full name (the StatefulSet's and the Services' base). */}}
{{- define "codeexec.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "codeexec.fullname" -}}
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

{{/* The headless Service: it gives each replica a stable DNS name, <pod>.<this>. */}}
{{- define "codeexec.headless" -}}
{{- printf "%s-headless" (include "codeexec.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The peers every replica lists: each pod's name (which the ids of its sessions
carry) and its address through the headless Service; as many as the StatefulSet
can have (autoscaling's maximum). A name not running yet costs nothing: no id
names it. */}}
{{- define "codeexec.peers" -}}
{{- $n := int .Values.replicaCount }}
{{- if .Values.autoscaling.enabled }}{{ $n = int .Values.autoscaling.maxReplicas }}{{ end }}
{{- $full := include "codeexec.fullname" . }}
{{- $svc := include "codeexec.headless" . }}
{{- $peers := list }}
{{- range $i := until $n }}
{{- $peers = append $peers (printf "%s-%d=http://%s-%d.%s.%s.svc.%s:8080" $full $i $full $i $svc $.Release.Namespace $.Values.clusterDomain) }}
{{- end }}
{{- join "," $peers }}
{{- end }}

{{- define "codeexec.selectorLabels" -}}
app.kubernetes.io/name: {{ include "codeexec.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "codeexec.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "codeexec.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret of the API keys: the user's, or the chart's. */}}
{{- define "codeexec.keysSecret" -}}
{{- default (printf "%s-keys" (include "codeexec.fullname" .)) .Values.apiKeys.existingSecret }}
{{- end }}

{{/* The Secret of the upstream's key, or "" when there is none. */}}
{{- define "codeexec.upstreamSecret" -}}
{{- if .Values.upstream.existingSecret }}
{{- .Values.upstream.existingSecret }}
{{- else if .Values.upstream.apiKey }}
{{- printf "%s-upstream" (include "codeexec.fullname" .) }}
{{- end }}
{{- end }}
