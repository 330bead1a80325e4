{{/* The release-scoped name prefix. */}}
{{- define "mailbus.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels common to every object. */}}
{{- define "mailbus.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mailbus
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "store"). */}}
{{- define "mailbus.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The image of one component: (dict "root" $ "component" "store"). */}}
{{- define "mailbus.image" -}}
{{- $c := index .root.Values .component -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag -}}
{{- if .root.Values.image.registry -}}
{{- printf "%s/%s:%s" .root.Values.image.registry $c.image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" $c.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The components the chart can run, in order. */}}
{{- define "mailbus.components" -}}
store imapsync pop3fetcher webhooks
{{- end -}}
