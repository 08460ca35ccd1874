{{/*
Names and labels shared by every template. The full name is the release's name when it already holds the
chart's name (the seed's `helm install patronus-operator ...` gives patronus-operator everywhere),
otherwise "<release>-patronus-operator"; either is cut to 63 characters.
*/}}
{{- define "patronus-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "patronus-operator.configMapName" -}}
{{- printf "%s-config" (include "patronus-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "patronus-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "patronus-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The pods' selector: `app` is what the seed's `kubectl logs -l app=patronus-operator` selects. */}}
{{- define "patronus-operator.selectorLabels" -}}
app: {{ .Chart.Name }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "patronus-operator.labels" -}}
{{ include "patronus-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: patronus
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "patronus-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default (printf "v%s" .Chart.AppVersion)) -}}
{{- end -}}

{{- define "patronus-operator.agentImage" -}}
{{- $image := .Values.agent.image -}}
{{- printf "%s:%s" $image.repository ($image.tag | default (printf "v%s" .Chart.AppVersion)) -}}
{{- end -}}

{{/* The namespaces the operator watches: none listed means the release's own when namespaced. */}}
{{- define "patronus-operator.watchNamespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- join "," (uniq .Values.watchNamespaces) -}}
{{- else if eq .Values.rbac.scope "namespaced" -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "patronus-operator.leaseNamespace" -}}
{{- .Values.leaderElection.namespace | default .Release.Namespace -}}
{{- end -}}

{{- define "patronus-operator.leaseName" -}}
{{- .Values.leaderElection.id | default (include "patronus-operator.fullname" .) -}}
{{- end -}}

{{/*
What the operator does in a namespace it watches: read the four kinds and write their status, create the
Paths a Mesh implies (and delete those it prunes), apply each Site's children, and write Events. It
writes by server-side apply, so no `update`, and garbage collection removes
a deleted Site's children, so no `delete` but of Paths. It holds every right it grants a site's agent
there, which is what lets it create the agents' Roles without `escalate`.
*/}}
{{- define "patronus-operator.rules" -}}
- apiGroups: [sdwan.patronus.dev]
  resources: [sites, policies, meshes]
  verbs: [get, list, watch]
- apiGroups: [sdwan.patronus.dev]
  resources: [paths]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [sdwan.patronus.dev]
  resources: [sites/status, paths/status, policies/status, meshes/status]
  verbs: [get, patch]
# Children of Sites. Secrets: the generated key Secrets, and reading a Site's own (labelled) key Secret.
- apiGroups: [""]
  resources: [secrets, configmaps, serviceaccounts, services, persistentvolumeclaims]
  verbs: [get, list, watch, create, patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
