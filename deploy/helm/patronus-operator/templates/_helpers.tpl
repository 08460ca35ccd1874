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
# Each agent's heartbeat Lease, which the operator creates and the agent renews.
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/*
The dashboard (`patronus dashboard`, optional). Its pods carry labels of their own, so neither the
operator's Service, its PodDisruptionBudget nor its Deployment ever selects them (nor the reverse).
*/}}
{{- define "patronus-operator.dashboard.name" -}}
{{- printf "%s-dashboard" (include "patronus-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "patronus-operator.dashboard.selectorLabels" -}}
app: patronus-dashboard
app.kubernetes.io/name: patronus-dashboard
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "patronus-operator.dashboard.labels" -}}
{{ include "patronus-operator.dashboard.selectorLabels" . }}
app.kubernetes.io/component: dashboard
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: patronus
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "patronus-operator.dashboard.serviceAccountName" -}}
{{- $account := .Values.dashboard.serviceAccount -}}
{{- if $account.create -}}
{{- default (include "patronus-operator.dashboard.name" .) $account.name -}}
{{- else -}}
{{- required "dashboard.serviceAccount.name is required when dashboard.serviceAccount.create is false" $account.name -}}
{{- end -}}
{{- end -}}

{{/* The one namespace the dashboard shows: its value, else the first watched one, else the release's. */}}
{{- define "patronus-operator.dashboard.namespace" -}}
{{- if .Values.dashboard.namespace -}}
{{- .Values.dashboard.namespace -}}
{{- else -}}
{{- first (splitList "," (include "patronus-operator.watchNamespaces" .)) | default .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/*
Cluster-scoped names of the dashboard's bindings carry the release's namespace: the auth-delegator
binding exists in namespaced mode too, where one release per namespace under the same name is normal.
*/}}
{{- define "patronus-operator.dashboard.clusterName" -}}
{{- printf "%s:%s" .Release.Namespace (include "patronus-operator.dashboard.name" .) -}}
{{- end -}}

{{/* What the dashboard reads (list + watch through informers); nothing else. */}}
{{- define "patronus-operator.dashboard.rules" -}}
- apiGroups: [sdwan.patronus.dev]
  resources: [sites, paths, policies, meshes]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [get, list, watch]
{{- end -}}

{{/* Agents' pods, as src/patronus/operator/site/children/names.py labels them (a test keeps them equal). */}}
{{- define "patronus-operator.agentSelectorLabels" -}}
app.kubernetes.io/name: patronus-agent
app.kubernetes.io/component: sdwan-core
{{- end -}}

{{/* Where agents run: the watched namespaces, or every namespace when none is listed (cluster mode). */}}
{{- define "patronus-operator.agentNamespaceSelector" -}}
{{- $watched := include "patronus-operator.watchNamespaces" . -}}
{{- if $watched -}}
matchNames: {{ splitList "," $watched | toJson }}
{{- else -}}
any: true
{{- end -}}
{{- end -}}

{{/* interval and scrapeTimeout of a monitor's endpoint, each only when set. */}}
{{- define "patronus-operator.scrapeSettings" -}}
{{- $settings := dict -}}
{{- with .interval }}{{ $_ := set $settings "interval" . }}{{ end -}}
{{- with .scrapeTimeout }}{{ $_ := set $settings "scrapeTimeout" . }}{{ end -}}
{{- if $settings }}{{ toYaml $settings }}{{ end -}}
{{- end -}}
