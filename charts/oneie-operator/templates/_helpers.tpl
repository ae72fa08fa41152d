{{/*
Names. The full name prefixes every object the chart creates, including the cluster-scoped ones
(ClusterRoles of the tenant roles), so two releases in one cluster do not collide.
*/}}
{{- define "oneie.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "oneie.fullname" -}}
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

{{- define "oneie.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "oneie.labels" -}}
helm.sh/chart: {{ include "oneie.chart" . }}
{{ include "oneie.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: oneie-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the operator's pods (never change them after the first install). */}}
{{- define "oneie.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oneie.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "oneie.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "oneie.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "oneie.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Peering (Kopf) is on with two or more replicas. */}}
{{- define "oneie.peering" -}}
{{- if ge (int .Values.replicas) 2 }}true{{ end }}
{{- end }}

{{/*
"true" when watch.namespaces has a glob (* ?) or an exclusion (!): the operator then lists and
watches namespaces to match them, and its rules are cluster-wide (a Role needs a real namespace).
*/}}
{{- define "oneie.watchPatterns" -}}
{{- range .Values.watch.namespaces }}{{ if regexMatch "[*?!]" . }}true{{ end }}{{ end }}
{{- end }}

{{- define "oneie.peeringName" -}}
{{- default (include "oneie.fullname" .) .Values.peering.name }}
{{- end }}

{{/* The Secret and key that hold the encryption key (existing or chart-created). */}}
{{- define "oneie.encryptionSecretName" -}}
{{- default (printf "%s-encryption" (include "oneie.fullname" .)) .Values.encryption.existingSecret }}
{{- end }}

{{- define "oneie.encryptionSecretKey" -}}
{{- if .Values.encryption.existingSecret }}{{ .Values.encryption.existingSecretKey }}{{ else }}ENCRYPTION_KEY{{ end }}
{{- end }}

{{/* Webhook: Service name and the Secret with its serving certificate. */}}
{{- define "oneie.webhookServiceName" -}}
{{- printf "%s-webhook" (include "oneie.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "oneie.webhookCertSecretName" -}}
{{- printf "%s-webhook-tls" (include "oneie.fullname" .) }}
{{- end }}

{{/*
Environment variable name of one platform-default setting, the same rule as the operator's
oneie_operator.platform_default.env_name: <PROVIDER>_<FIELD in UPPER_SNAKE_CASE>.
  restPrefix (wordpress) -> WORDPRESS_REST_PREFIX
*/}}
{{- define "oneie.providerEnvName" -}}
{{- $provider := .provider | upper | replace "-" "_" }}
{{- $field := regexReplaceAll "([A-Z])" .field "_${1}" | trimPrefix "_" | upper }}
{{- printf "%s_%s" $provider $field }}
{{- end }}

{{/*
Checks across values that values.schema.json cannot express with a readable message.
Included by the Deployment, so every render runs them.
*/}}
{{- define "oneie.validate" -}}
{{- $v := .Values }}
{{- if eq (lower $v.image.tag) "latest" }}
{{- fail "image.tag: `latest` is not allowed; pin a version (e.g. 0.1.0) or leave it empty for the chart's appVersion" }}
{{- end }}
{{- if or (hasPrefix "127." $v.config.bindAddress) (eq $v.config.bindAddress "::1") }}
{{- fail "config.bindAddress: a loopback address would hide /healthz and /metrics from the kubelet and Prometheus; use 0.0.0.0 or ::" }}
{{- end }}
{{- if and $v.encryption.existingSecret $v.encryption.key }}
{{- fail "encryption: set either encryption.existingSecret or encryption.key, not both" }}
{{- end }}
{{- if and (not $v.encryption.existingSecret) (ne $v.encryption.existingSecretKey "ENCRYPTION_KEY") }}
{{- fail "encryption.existingSecretKey applies only with encryption.existingSecret (a chart-created Secret always holds ENCRYPTION_KEY)" }}
{{- end }}
{{- if and (not $v.platformDefault.provider) (or $v.platformDefault.settings $v.platformDefault.existingSecret) }}
{{- fail "platformDefault: settings or existingSecret are set but platformDefault.provider is empty" }}
{{- end }}
{{- if eq (int $v.config.metricsPort) (int $v.config.healthPort) }}
{{- fail "config.metricsPort and config.healthPort must differ" }}
{{- end }}
{{- if and $v.webhook.enabled (or (eq (int $v.webhook.port) (int $v.config.metricsPort)) (eq (int $v.webhook.port) (int $v.config.healthPort))) }}
{{- fail "webhook.port must differ from config.metricsPort and config.healthPort" }}
{{- end }}
{{- if and (include "oneie.peering" .) (eq $v.updateStrategy "Recreate") }}
{{- fail "updateStrategy Recreate with replicas >= 2 would stop every replica at once; use RollingUpdate or leave it empty" }}
{{- end }}
{{- if and (include "oneie.peering" .) (not $v.peering.crds.install) (not (.Capabilities.APIVersions.Has "kopf.dev/v1")) }}
{{- fail "replicas >= 2 needs Kopf's peering CRDs (kopf.dev/v1): set peering.crds.install=true, or install them first (helm template: pass --api-versions kopf.dev/v1 when they exist)" }}
{{- end }}
{{- if and (or $v.rbac.platformOwner.groups $v.rbac.platformOwner.users) (not $v.rbac.tenantRoles.create) }}
{{- fail "rbac.platformOwner binds the platform-owner ClusterRole, which needs rbac.tenantRoles.create=true" }}
{{- end }}
{{- if $v.serviceMonitor.enabled }}
{{- if not $v.metrics.service.enabled }}
{{- fail "serviceMonitor.enabled needs metrics.service.enabled (the ServiceMonitor selects that Service)" }}
{{- end }}
{{- end }}
{{- end }}
