{{/* The release's full name: "flowstop" for a release called flowstop, else release-flowstop. */}}
{{- define "flowstop.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* What selects the operator's Pods (never changes across upgrades). */}}
{{- define "flowstop.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "flowstop.labels" -}}
{{ include "flowstop.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "flowstop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "flowstop.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "flowstop.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The series of this release's operator, as scraped through its ServiceMonitor. */}}
{{- define "flowstop.series" -}}
job="{{ include "flowstop.fullname" . }}-metrics",namespace="{{ .Release.Namespace }}"
{{- end -}}

{{/* The operator's rules on namespaced objects: in its ClusterRole when it watches every
namespace, else in a Role in each watched namespace (rbac.yaml). */}}
{{- define "flowstop.namespacedRules" }}
- apiGroups: [flowstop.dev]
  resources: [executionstops]
  verbs: [get, list, watch, create, delete]
- apiGroups: [flowstop.dev]
  resources: [executionstopsets]
  verbs: [get, list, watch, delete]
- apiGroups: [flowstop.dev]
  resources: [executionstops/status, executionstopsets/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
