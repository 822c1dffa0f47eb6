{{/* Chart name (or nameOverride), truncated to a DNS label. */}}
{{- define "bluegreen.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name prefix R: the release name (or fullnameOverride), short enough for "R-controller". */}}
{{- define "bluegreen.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/* Chart name and version for the helm.sh/chart label. */}}
{{- define "bluegreen.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels of every object. */}}
{{- define "bluegreen.labels" -}}
helm.sh/chart: {{ include "bluegreen.chart" . }}
{{ include "bluegreen.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bluegreen
{{- end }}

{{/* Selector labels shared by every component (name + instance). */}}
{{- define "bluegreen.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bluegreen.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one color's model-server pods; dict "root" . "color" "blue". */}}
{{- define "bluegreen.modelServer.selectorLabels" -}}
{{ include "bluegreen.selectorLabels" .root }}
app.kubernetes.io/component: model-server
bluegreen.io/color: {{ .color }}
{{- end }}

{{/* Selector labels of the controller pod. */}}
{{- define "bluegreen.controller.selectorLabels" -}}
{{ include "bluegreen.selectorLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{/* Name of the controller's ServiceAccount, Role, RoleBinding, Deployment and Service. */}}
{{- define "bluegreen.controller.fullname" -}}
{{- printf "%s-controller" (include "bluegreen.fullname" .) }}
{{- end }}

{{/* Name of the Secret holding the controller's API token (key "token") and the model servers' admin token (key "model-server-token"). */}}
{{- define "bluegreen.tokenSecretName" -}}
{{- default (printf "%s-controller-token" (include "bluegreen.fullname" .)) .Values.controller.existingTokenSecret }}
{{- end }}

{{/* Name of the controller's journal ConfigMap; the controller makes it (controller/kubernetes/journal.py). */}}
{{- define "bluegreen.journalName" -}}
{{- printf "%s-journal" (include "bluegreen.fullname" .) }}
{{- end }}

{{/* Name of the controller's release Lease; the controller makes it (controller/kubernetes/lease.py). */}}
{{- define "bluegreen.leaseName" -}}
{{- printf "%s-release-lock" (include "bluegreen.fullname" .) }}
{{- end }}

{{/* Replicas the controller keeps each color at: autoscaling.minReplicas while autoscaling, else modelServer.replicaCount. */}}
{{- define "bluegreen.modelServer.replicas" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.minReplicas }}{{ else }}{{ .Values.modelServer.replicaCount }}{{ end }}
{{- end }}

{{/* Where Secrets are mounted as files: the tokens at its top, the MLflow fileSecret under mlflow/. */}}
{{- define "bluegreen.secretsDir" -}}
/var/run/secrets/bluegreen
{{- end }}

{{/* Container image reference; the tag defaults to the chart appVersion. */}}
{{- define "bluegreen.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}

{{/* sha256 of the configuration the model-server pods read from the environment, so a change rolls them. */}}
{{- define "bluegreen.modelServer.configChecksum" -}}
{{- dict "mlflow" .Values.mlflow "model" .Values.model "extraEnv" .Values.modelServer.extraEnv "tokenSecret" (include "bluegreen.tokenSecretName" .) | toJson | sha256sum }}
{{- end }}

{{/* sha256 of the configuration the controller pod reads from the environment, so a change rolls it. */}}
{{- define "bluegreen.controller.configChecksum" -}}
{{- $c := .Values.controller }}
{{- dict "mlflow" .Values.mlflow "model" .Values.model "liveAlias" $c.liveAlias "stageTimeoutSeconds" $c.stageTimeoutSeconds "extraEnv" $c.extraEnv "tokenSecret" (include "bluegreen.tokenSecretName" .) | toJson | sha256sum }}
{{- end }}

{{/*
Model version pinned into one color; dict "root" . "color" "blue".
The controller owns the pin after install: the version in the existing Deployment's
"bluegreen.io/model-version" annotation wins over values. An upgrade that cannot see the
cluster (lookup empty: `helm upgrade --dry-run=client`, no read access) fails rather than
re-render a pin from values. A color without a version starts as a warm copy of the live
color's version, so no Deployment is ever rendered with `replicas` (the controller owns them).
*/}}
{{- define "bluegreen.modelVersion" -}}
{{- $root := .root }}
{{- $name := printf "%s-%s" (include "bluegreen.fullname" $root) .color }}
{{- $existing := lookup "apps/v1" "Deployment" $root.Release.Namespace $name | default dict }}
{{- $pinned := dig "metadata" "annotations" "bluegreen.io/model-version" "" $existing }}
{{- if and $root.Release.IsUpgrade (not $existing) }}
{{- fail (printf "upgrade cannot read Deployment %s (lookup is empty: --dry-run=client, or no read access): refusing to re-render the version the controller pinned; use --dry-run=server" $name) }}
{{- end }}
{{- if $pinned }}
{{- $pinned }}
{{- else }}
{{- $own := (index $root.Values .color).version | default "" | toString }}
{{- $live := (index $root.Values ($root.Values.liveColor | default "blue")).version | default "" | toString }}
{{- $own | default $live }}
{{- end }}
{{- end }}

{{/*
Color the live Service selects. The controller owns the selector after install: the color
on the existing Service wins over values.liveColor. An upgrade that cannot see the Service
fails instead of flipping traffic back to values.liveColor. `helm template` (Argo CD) renders
values.liveColor: see the README for the `ignoreDifferences` that keeps the controller's color.
*/}}
{{- define "bluegreen.liveColor" -}}
{{- $name := include "bluegreen.fullname" . }}
{{- $existing := lookup "v1" "Service" .Release.Namespace $name | default dict }}
{{- if and .Release.IsUpgrade (not $existing) }}
{{- fail (printf "upgrade cannot read Service %s (lookup is empty: --dry-run=client, or no read access): refusing to reset the live color the controller owns; use --dry-run=server" $name) }}
{{- end }}
{{- dig "spec" "selector" "bluegreen.io/color" "" $existing | default .Values.liveColor | default "blue" }}
{{- end }}

{{/* Env vars shared by every container: MLflow (and the paths of its fileSecret's files), a writable /tmp as TMPDIR and HOME. */}}
{{- define "bluegreen.commonEnv" -}}
- name: MLFLOW_TRACKING_URI
  value: {{ .Values.mlflow.trackingUri | quote }}
- name: TMPDIR
  value: /tmp
- name: HOME
  value: /tmp
{{- if .Values.mlflow.fileSecret.name }}
{{- range $env, $key := .Values.mlflow.fileSecret.env }}
- name: {{ $env }}
  value: {{ printf "%s/mlflow/%s" (include "bluegreen.secretsDir" $) $key | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Volumes of the Secrets every container reads as files: the token Secret, limited to the keys
given (a list; the model servers get only "model-server-token"), and the MLflow fileSecret.
dict "root" . "keys" (list "token"). Mode 0440: readable by the pod's fsGroup, no one else.
*/}}
{{- define "bluegreen.secretVolumes" -}}
- name: tokens
  secret:
    secretName: {{ include "bluegreen.tokenSecretName" .root }}
    defaultMode: 0440
    items:
      {{- range .keys }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- with .root.Values.mlflow.fileSecret.name }}
- name: mlflow-files
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{/* Mounts of "bluegreen.secretVolumes", read-only under "bluegreen.secretsDir". */}}
{{- define "bluegreen.secretMounts" -}}
- name: tokens
  mountPath: {{ include "bluegreen.secretsDir" . }}/tokens
  readOnly: true
{{- if .Values.mlflow.fileSecret.name }}
- name: mlflow-files
  mountPath: {{ include "bluegreen.secretsDir" . }}/mlflow
  readOnly: true
{{- end }}
{{- end }}

{{/*
The one pod spec both color Deployments share; only the color and its version differ.
dict "root" . "color" "blue" "version" "3".
*/}}
{{- define "bluegreen.modelServer.podSpec" -}}
{{- $root := .root -}}
{{- $values := $root.Values -}}
{{- $ms := $values.modelServer -}}
{{- with $values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $ms.serviceAccountName }}
serviceAccountName: {{ $ms.serviceAccountName }}
{{- end }}
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ $ms.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml $values.podSecurityContext | nindent 2 }}
containers:
  - name: model-server
    image: {{ include "bluegreen.image" $root }}
    imagePullPolicy: {{ $values.image.pullPolicy }}
    command: ["bluegreen"]
    args: ["serve", "model", "--host", "0.0.0.0", "--port", "8080"]
    ports:
      - name: http
        containerPort: 8080
        protocol: TCP
    env:
      {{- include "bluegreen.commonEnv" $root | nindent 6 }}
      - name: MODEL_NAME
        value: {{ $values.model.name | quote }}
      - name: MODEL_VERSION
        value: {{ .version | quote }}
      - name: SERVING_COLOR
        value: {{ .color | quote }}
      # The admin token as a file (only its own key is mounted), not an environment variable.
      - name: MODEL_SERVER_ADMIN_TOKEN_FILE
        value: {{ include "bluegreen.secretsDir" $root }}/tokens/model-server-token
      # The model cache (re-pins, rollbacks and restarts skip MLflow's loader) lives on the
      # /tmp emptyDir: the root filesystem is read-only, and the cache outlives a restart.
      - name: MODEL_SERVER_CACHE_DIR
        value: /tmp/bluegreen-models
      {{- with $ms.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with $values.mlflow.existingSecret }}
    envFrom:
      - secretRef:
          name: {{ . }}
    {{- end }}
    lifecycle:
      preStop:
        sleep:
          seconds: {{ $ms.preStopSleepSeconds }}
    startupProbe:
      httpGet:
        path: /healthz
        port: http
      {{- toYaml $ms.startupProbe | nindent 6 }}
    readinessProbe:
      httpGet:
        path: /readyz
        port: http
      {{- toYaml $ms.readinessProbe | nindent 6 }}
    livenessProbe:
      httpGet:
        path: /healthz
        port: http
      {{- toYaml $ms.livenessProbe | nindent 6 }}
    resources:
      {{- toYaml $ms.resources | nindent 6 }}
    securityContext:
      {{- toYaml $values.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- include "bluegreen.secretMounts" $root | nindent 6 }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ $ms.tmpSizeLimit }}
  {{- include "bluegreen.secretVolumes" (dict "root" $root "keys" (list "model-server-token")) | nindent 2 }}
{{- with $ms.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $ms.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $ms.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if or $ms.topologySpread.enabled $ms.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- with $ms.topologySpread }}
  {{- if .enabled }}
  # Each color spreads on its own; pod-template-hash limits the count to the newest
  # ReplicaSet, so the old pods of a 100 % surge rollout do not skew it.
  - maxSkew: {{ .maxSkew }}
    topologyKey: {{ .topologyKey }}
    whenUnsatisfiable: {{ .whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "bluegreen.modelServer.selectorLabels" (dict "root" $root "color" $.color) | nindent 8 }}
    matchLabelKeys:
      - pod-template-hash
  {{- end }}
  {{- end }}
  {{- with $ms.topologySpreadConstraints }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
One color's model-server Deployment around the shared pod spec; dict "root" . "color" "blue".
`spec.replicas` is never rendered: the controller (or the HPA) owns it, so neither Helm 3's
three-way merge nor Helm 4's server-side apply resets or contests it. Annotation
"bluegreen.io/target-replicas": the replicas the controller keeps the color at (at least,
when "bluegreen.io/autoscaled" is "true" and the HPA scales it further).
*/}}
{{- define "bluegreen.modelServer.deployment" -}}
{{- $root := .root -}}
{{- $color := .color -}}
{{- $values := $root.Values -}}
{{- $version := include "bluegreen.modelVersion" . -}}
{{- $replicas := include "bluegreen.modelServer.replicas" $root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "bluegreen.fullname" $root }}-{{ $color }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "bluegreen.labels" $root | nindent 4 }}
    app.kubernetes.io/component: model-server
    bluegreen.io/color: {{ $color }}
  annotations:
    bluegreen.io/model-version: {{ $version | quote }}
    bluegreen.io/target-replicas: {{ $replicas | quote }}
    bluegreen.io/autoscaled: {{ $values.autoscaling.enabled | quote }}
spec:
  revisionHistoryLimit: 5
  progressDeadlineSeconds: {{ $values.modelServer.progressDeadlineSeconds }}
  strategy:
    {{- toYaml $values.modelServer.strategy | nindent 4 }}
  selector:
    matchLabels:
      {{- include "bluegreen.modelServer.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "bluegreen.modelServer.selectorLabels" . | nindent 8 }}
        {{- with $values.modelServer.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        bluegreen.io/model-version: {{ $version | quote }}
        checksum/config: {{ include "bluegreen.modelServer.configChecksum" $root }}
        {{- with $values.modelServer.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "bluegreen.modelServer.podSpec" (dict "root" $root "color" $color "version" $version) | trim | nindent 6 }}
{{- end }}
