{{/* ---- names and labels ---------------------------------------------------------------- */}}
{{- define "storycue.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "storycue.fullname" -}}
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

{{- define "storycue.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "storycue.selectorLabels" -}}
app.kubernetes.io/name: {{ include "storycue.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "storycue.labels" -}}
helm.sh/chart: {{ include "storycue.chart" . }}
{{ include "storycue.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: storycue
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The components, as (values key, Kubernetes name) pairs, in a stable order. */}}
{{- define "storycue.components" -}}
gateway: gateway
textWorker: text-worker
audioWorker: audio-worker
trainer: trainer
ingestConsumer: ingest-consumer
{{- end -}}

{{/* Labels of one component: call with (dict "root" $ "component" "text-worker"). */}}
{{- define "storycue.componentLabels" -}}
{{ include "storycue.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "storycue.componentSelector" -}}
{{ include "storycue.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "storycue.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "storycue.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "storycue.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- printf "%s-secrets" (include "storycue.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The image of a flavour (cpu|gpu): call with (dict "root" $ "flavour" "gpu"). */}}
{{- define "storycue.image" -}}
{{- $img := .root.Values.image -}}
{{- $digest := get ($img.digests | default dict) .flavour -}}
{{- if $digest -}}
{{- printf "%s@%s" $img.repository $digest -}}
{{- else -}}
{{- printf "%s:%s-%s" $img.repository (default .root.Chart.AppVersion $img.tag) .flavour -}}
{{- end -}}
{{- end -}}

{{/* ---- settings ------------------------------------------------------------------------- */}}
{{/* One value as an environment string: lists and maps as JSON, integral numbers without
     an exponent (Helm reads every number as a float: 20000000 would print as 2e+07). */}}
{{- define "storycue.envValue" -}}
{{- if or (kindIs "slice" .) (kindIs "map" .) -}}
{{- toJson . -}}
{{- else if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* STORYCUE_* lines of a (nested) settings map; null values are left out.
     Call with (dict "prefix" "STORYCUE_" "values" .Values.config). */}}
{{- define "storycue.settingsEnv" -}}
{{- $prefix := .prefix -}}
{{- range $key, $value := .values }}
{{- $name := printf "%s%s" $prefix (upper $key) }}
{{- if kindIs "map" $value }}
{{- include "storycue.settingsEnv" (dict "prefix" (printf "%s__" $name) "values" $value) }}
{{- else if not (kindIs "invalid" $value) }}
{{ $name }}: {{ include "storycue.envValue" $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* ---- connections: the enabled community chart, else the external values --------------- */}}
{{- define "storycue.databaseUrl" -}}
{{- if .Values.postgresql.enabled -}}
{{- $auth := .Values.postgresql.auth -}}
{{- printf "postgresql://%s:%s@%s-postgresql:5432/%s" $auth.username (urlquery $auth.password) .Release.Name $auth.database -}}
{{- else -}}
{{- .Values.externalDatabase.url -}}
{{- end -}}
{{- end -}}

{{- define "storycue.brokerUrl" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://:%s@%s-redis-master:6379/0" (urlquery .Values.redis.auth.password) .Release.Name -}}
{{- else -}}
{{- .Values.externalBroker.url -}}
{{- end -}}
{{- end -}}

{{- define "storycue.qdrantUrl" -}}
{{- if .Values.qdrant.enabled -}}
{{- printf "http://%s-qdrant:6333" .Release.Name -}}
{{- else -}}
{{- .Values.externalQdrant.url -}}
{{- end -}}
{{- end -}}

{{- define "storycue.kafkaBootstrap" -}}
{{- if .Values.kafka.enabled -}}
{{- printf "%s-kafka:9092" .Release.Name -}}
{{- else -}}
{{- .Values.externalKafka.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{/* Fail early, with the value to set, when a required connection is missing. */}}
{{- define "storycue.validate" -}}
{{- if not .Values.secrets.existingSecret -}}
{{- if not (include "storycue.databaseUrl" .) -}}
{{- fail "set externalDatabase.url (or secrets.existingSecret, or postgresql.enabled=true)" -}}
{{- end -}}
{{- if and (eq .Values.config.queue.execution "celery") (not (include "storycue.brokerUrl" .)) -}}
{{- fail "set externalBroker.url (or secrets.existingSecret, or redis.enabled=true)" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.ingestConsumer.enabled (not (include "storycue.kafkaBootstrap" .)) -}}
{{- fail "set externalKafka.bootstrapServers (or kafka.enabled=true), or ingestConsumer.enabled=false" -}}
{{- end -}}
{{- end -}}

{{/* Checksums that roll the pods when their configuration changes. */}}
{{- define "storycue.configChecksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end -}}
