{{/*
Names are fixed, not derived from the release: the manager's code refers to
stretch-system, stretch-controller-manager, stretch-webhook and
stretch-remote-workloads by name.
*/}}
{{- define "stretch.namespace" -}}stretch-system{{- end -}}
{{- define "stretch.managerName" -}}stretch-controller-manager{{- end -}}
{{- define "stretch.webhookServiceName" -}}stretch-webhook{{- end -}}
{{- define "stretch.metricsServiceName" -}}stretch-metrics{{- end -}}

{{/* Labels of every object; part-of is what stretchctl marks its objects with. */}}
{{- define "stretch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stretch
{{- end -}}

{{/* Labels of the cluster-wide definitions (CRDs, RBAC, RuntimeClass). */}}
{{- define "stretch.commonLabels" -}}
app.kubernetes.io/name: stretch
{{ include "stretch.labels" . }}
{{- end -}}

{{/* Selector of the manager's pods; immutable in the Deployment, never change it. */}}
{{- define "stretch.manager.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stretch.managerName" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Labels of the manager's pods: without helm.sh/chart, so that a change of the
chart alone does not restart the manager (and move its leadership).
*/}}
{{- define "stretch.manager.podLabels" -}}
{{ include "stretch.manager.selectorLabels" . }}
app.kubernetes.io/component: controller-manager
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stretch
{{- end -}}

{{/* Labels of the manager's objects. */}}
{{- define "stretch.manager.labels" -}}
app.kubernetes.io/name: {{ include "stretch.managerName" . }}
app.kubernetes.io/component: controller-manager
{{ include "stretch.labels" . }}
{{- end -}}

{{/* The image reference: repository[:tag][@digest]; the tag defaults to appVersion. */}}
{{- define "stretch.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if and .Values.image.digest (not .Values.image.tag) -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* clusterLabels as the --cluster-labels flag wants them: k=v,... sorted by key. */}}
{{- define "stretch.clusterLabels" -}}
{{- $pairs := list -}}
{{- range $k, $v := .Values.clusterLabels -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/*
Checks that the schema cannot express; each failure names the value and the
fix. Included by checks.yaml, so that every render runs them.
*/}}
{{- define "stretch.checks" -}}
{{- $ns := include "stretch.namespace" . -}}
{{- if ne .Release.Namespace $ns -}}
{{- fail (printf "the stretch chart must be installed in namespace %s, not %q: the manager looks up its identity, certificates and Lease there; install it with: helm install %s <chart> --namespace %s --create-namespace" $ns .Release.Namespace .Release.Name $ns) -}}
{{- end -}}
{{- if .Values.manager.enabled -}}
{{- if not .Values.clusterName -}}
{{- fail "clusterName is required when manager.enabled is true: this cluster's name for its peers, e.g. --set clusterName=provider-eu (or set manager.enabled=false for a manager that runs outside the cluster)" -}}
{{- end -}}
{{- if not .Values.image.repository -}}
{{- fail "image.repository is required when manager.enabled is true: no public registry serves Stretch's image; push it with 'make image-push REGISTRY=<registry>/<path>' and set image.repository=<registry>/<path>/stretch-controller-manager (stretchctl install --image <registry>/<path>/stretch-controller-manager:<tag>)" -}}
{{- end -}}
{{- $min := .Values.podDisruptionBudget.minAvailable -}}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "string" $min)) (ge (int $min) (int .Values.replicaCount)) -}}
{{- fail (printf "podDisruptionBudget.minAvailable=%v with replicaCount=%v would block every node drain: raise replicaCount, lower podDisruptionBudget.minAvailable, or set podDisruptionBudget.enabled=false" $min .Values.replicaCount) -}}
{{- end -}}
{{- end -}}
{{- end -}}
