{{/* Names, labels and shared pieces of the podtap chart. */}}

{{- define "podtap.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name: the release name when it already says podtap. */}}
{{- define "podtap.fullname" -}}
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

{{/* Name of one component's objects: include "podtap.component" (list . "agent") */}}
{{- define "podtap.component" -}}
{{- $top := index . 0 -}}
{{- printf "%s-%s" (include "podtap.fullname" $top | trunc 52 | trimSuffix "-") (index . 1) -}}
{{- end -}}

{{- define "podtap.selectorLabels" -}}
{{- $top := index . 0 -}}
app.kubernetes.io/name: {{ include "podtap.name" $top }}
app.kubernetes.io/instance: {{ $top.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Labels of every object; with a component: include "podtap.labels" (list . "agent"), without: (list .) */}}
{{- define "podtap.labels" -}}
{{- $top := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $top.Chart.Name $top.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "podtap.name" $top }}
app.kubernetes.io/instance: {{ $top.Release.Name }}
app.kubernetes.io/version: {{ $top.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $top.Release.Service }}
app.kubernetes.io/part-of: podtap
{{- if gt (len .) 1 }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}
{{- with $top.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "podtap.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{- define "podtap.priorityClassName" -}}
{{- if .Values.priorityClass.name -}}
{{- .Values.priorityClass.name -}}
{{- else if .Values.priorityClass.create -}}
{{- printf "%s-node-critical" (include "podtap.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "podtap.tokenSecretName" -}}
{{- if .Values.collector.token.existingSecret -}}
{{- .Values.collector.token.existingSecret -}}
{{- else -}}
{{- include "podtap.component" (list . "collector-token") -}}
{{- end -}}
{{- end -}}

{{/* Is there a collector token at all? */}}
{{- define "podtap.hasToken" -}}
{{- if or .Values.collector.token.create .Values.collector.token.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* The security context of a container that needs nothing from the host. */}}
{{- define "podtap.restrictedContainerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment every role gets. */}}
{{- define "podtap.commonEnv" -}}
- name: PODTAP_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef: {fieldPath: metadata.namespace}
{{- end -}}

{{/*
The collector Services a SniffPolicy may name ("namespace/name"), comma-
separated: this install's collector (destinations.installCollector) and
destinations.services. One list for the admission policy and the
controller's flags (vap-destinations.yaml, controller.yaml).
*/}}
{{- define "podtap.allowedServices" -}}
{{- $l := list -}}
{{- if and .Values.destinations.installCollector .Values.collector.enabled -}}
{{- $l = append $l (printf "%s/%s" .Release.Namespace (include "podtap.component" (list . "collector"))) -}}
{{- end -}}
{{- range .Values.destinations.services -}}
{{- $l = append $l . -}}
{{- end -}}
{{- join "," $l -}}
{{- end -}}
