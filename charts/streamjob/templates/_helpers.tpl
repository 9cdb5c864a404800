{{/* Common names and labels of the streamjob chart. */}}
{{- define "streamjob.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "streamjob.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "streamjob.labels" -}}
app.kubernetes.io/name: {{ include "streamjob.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "streamjob.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamjob.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "streamjob.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "streamjob.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "streamjob.operatorKeySecret" -}}
{{- default (printf "%s-operator-key" (include "streamjob.fullname" .)) .Values.operatorKey.existingSecret -}}
{{- end -}}

{{/* The rules on StreamJobs and the objects of their jobs, shared by the ClusterRole and the Roles. */}}
{{- define "streamjob.jobRules" -}}
- apiGroups: [streamjob.dev]
  resources: [streamjobs]
  verbs: [get, list, watch, patch, update]
- apiGroups: [streamjob.dev]
  resources: [streamjobs/status]
  verbs: [get, patch, update]
- apiGroups: [streamjob.dev]
  resources: [streamjobsnapshots]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [streamjob.dev]
  resources: [streamjobsnapshots/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete, patch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, create, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, create]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
{{- if .Values.rbac.readJobSecrets }}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, create]
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end -}}
