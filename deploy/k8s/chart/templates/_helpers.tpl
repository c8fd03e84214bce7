{{/*
Names, labels and the pieces every workload shares.
*/}}

{{- define "stockwire.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stockwire.fullname" -}}
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

{{- define "stockwire.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The services, in start-up order: the four of the pipeline, then the console that reads them. */}}
{{- define "stockwire.serviceNames" -}}
{{- list "ingress" "inventory" "channel-notifier" "outbox-relay" "console" | toJson }}
{{- end }}

{{/* Does a service keep a store of its own (SQLite or PostgreSQL)? Returns "true" or "". */}}
{{- define "stockwire.hasStore" -}}
{{- if has . (list "ingress" "inventory" "channel-notifier") }}true{{ end }}
{{- end }}

{{/*
The console's peers: this release's Services, and the outbox-relay's port on the first writer that
carries it as a sidecar (sqlite), else its own Service. A JSON object of [console] keys.
*/}}
{{- define "stockwire.consolePeers" -}}
{{- $url := dict }}
{{- range $name := list "ingress" "inventory" "channel-notifier" }}
{{- $_ := set $url (printf "%s_url" (replace "-" "_" $name)) (printf "http://%s:%v" (include "stockwire.componentName" (dict "root" $ "name" $name)) (int (index $.Values.services $name).port)) }}
{{- end }}
{{- $relayHost := "outbox-relay" }}
{{- range $writer := list "inventory" "ingress" }}
{{- if include "stockwire.relaySidecar" (dict "root" $ "name" $writer) }}{{ $relayHost = $writer }}{{ end }}
{{- end }}
{{- $_ := set $url "outbox_relay_url" (printf "http://%s:%v" (include "stockwire.componentName" (dict "root" $ "name" $relayHost)) (int (index $.Values.services "outbox-relay").port)) }}
{{- toJson $url }}
{{- end }}

{{/* Python module of a service: channel-notifier -> services.channel_notifier. */}}
{{- define "stockwire.module" -}}
{{- printf "services.%s" (replace "-" "_" .) }}
{{- end }}

{{/* Environment-variable spelling of a config section: channel-notifier -> CHANNEL_NOTIFIER. */}}
{{- define "stockwire.envSection" -}}
{{- replace "-" "_" . | upper }}
{{- end }}

{{/* Name of one service's objects: <fullname>-<service>. Call with (dict "root" $ "name" $svc). */}}
{{- define "stockwire.componentName" -}}
{{- printf "%s-%s" (include "stockwire.fullname" .root | trunc 40 | trimSuffix "-") .name }}
{{- end }}

{{- define "stockwire.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stockwire.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "stockwire.labels" -}}
helm.sh/chart: {{ include "stockwire.chart" . }}
{{ include "stockwire.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stockwire
{{- end }}

{{/* Labels of one service. Call with (dict "root" $ "name" $svc). */}}
{{- define "stockwire.componentLabels" -}}
{{ include "stockwire.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "stockwire.componentSelectorLabels" -}}
{{ include "stockwire.selectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "stockwire.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stockwire.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "stockwire.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The Secret the chart writes from development-only inline values. */}}
{{- define "stockwire.devSecretName" -}}
{{- printf "%s-dev-secrets" (include "stockwire.fullname" .) }}
{{- end }}

{{- define "stockwire.postgresSecretName" -}}
{{- .Values.store.postgres.existingSecret | default (include "stockwire.devSecretName" .) }}
{{- end }}

{{/*
Store of one service: services.<name>.store when set, else store.mode. Call with (dict "root" $ "name" $svc).
*/}}
{{- define "stockwire.storeMode" -}}
{{- (index .root.Values.services .name).store | default .root.Values.store.mode }}
{{- end }}

{{/*
The writers (ingress, inventory) whose outbox is in PostgreSQL: the outbox-relay Deployment
drains these. A JSON list; call with the root context.
*/}}
{{- define "stockwire.postgresOutboxes" -}}
{{- $out := list }}
{{- range $writer := list "ingress" "inventory" }}
{{- if and (index $.Values.services $writer).enabled (eq (include "stockwire.storeMode" (dict "root" $ "name" $writer)) "postgres") }}
{{- $out = append $out $writer }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
Does the outbox-relay run as a sidecar of this writer? Yes for ingress and inventory on SQLite:
the relay must read the SQLite file on the pod's own volume. Returns "true" or "".
*/}}
{{- define "stockwire.relaySidecar" -}}
{{- if and (index .root.Values.services "outbox-relay").enabled (has .name (list "ingress" "inventory")) (eq (include "stockwire.storeMode" .) "sqlite") }}true{{ end }}
{{- end }}

{{/*
Does a service run as a workload of its own? The outbox-relay does only when some outbox is in
PostgreSQL (otherwise it lives in sidecars). Returns "true" or "".
*/}}
{{- define "stockwire.hasWorkload" -}}
{{- $svc := index .root.Values.services .name }}
{{- if and $svc.enabled (or (ne .name "outbox-relay") (include "stockwire.postgresOutboxes" .root | fromJsonArray)) }}true{{ end }}
{{- end }}

{{/* StatefulSet (sqlite: a volume per pod) or Deployment (postgres, the relay and the console). */}}
{{- define "stockwire.workloadKind" -}}
{{- if and (include "stockwire.hasStore" .name) (eq (include "stockwire.storeMode" .) "sqlite") }}StatefulSet{{ else }}Deployment{{ end }}
{{- end }}

{{/*
Custom resources are rendered only where the cluster serves their API (KEDA, the Prometheus
operator): applying one without its CRD fails the whole install. `helm template` knows only the
built-in APIs unless given --api-versions (e.g. -a keda.sh/v1alpha1/ScaledObject). NOTES.txt says
what was left out. Returns "true" or "".
*/}}
{{- define "stockwire.kedaApi" -}}keda.sh/v1alpha1/ScaledObject{{- end }}
{{- define "stockwire.serviceMonitorApi" -}}monitoring.coreos.com/v1/ServiceMonitor{{- end }}
{{- define "stockwire.prometheusRuleApi" -}}monitoring.coreos.com/v1/PrometheusRule{{- end }}

{{/* Does a service get a ScaledObject? keda.enabled and KEDA's API served. Call with (dict "root" $ "name" $svc). */}}
{{- define "stockwire.kedaActive" -}}
{{- $svc := index .root.Values.services .name }}
{{- if and (hasKey $svc "keda") $svc.keda.enabled (.root.Capabilities.APIVersions.Has (include "stockwire.kedaApi" .root)) }}true{{ end }}
{{- end }}

{{- define "stockwire.serviceMonitorActive" -}}
{{- if and .Values.serviceMonitor.enabled (.Capabilities.APIVersions.Has (include "stockwire.serviceMonitorApi" .)) }}true{{ end }}
{{- end }}

{{- define "stockwire.prometheusRuleActive" -}}
{{- if and .Values.prometheusRule.enabled (.Capabilities.APIVersions.Has (include "stockwire.prometheusRuleApi" .)) }}true{{ end }}
{{- end }}

{{/*
Seconds a container needs after SIGTERM: uvicorn finishes the requests in flight for up to 10 s
(timeout_graceful_shutdown in libs/server.py), then the app shuts down (consumers, NATS drain).
*/}}
{{- define "stockwire.shutdownSeconds" -}}15{{- end }}

{{/*
Checks that make an invalid combination of values fail at render time with a clear message.
*/}}
{{- define "stockwire.validate" -}}
{{- $postgres := list }}
{{- range $name := list "ingress" "inventory" "channel-notifier" }}
{{- $svc := index $.Values.services $name }}
{{- $mode := include "stockwire.storeMode" (dict "root" $ "name" $name) }}
{{- if not (has $mode (list "sqlite" "postgres")) }}
{{- fail (printf "services.%s: the store must be sqlite or postgres, not %q" $name $mode) }}
{{- end }}
{{- if and $svc.enabled (eq $mode "postgres") }}{{ $postgres = append $postgres $name }}{{ end }}
{{- if and (eq $mode "sqlite") $svc.enabled (ne $name "ingress") }}
{{- if gt (int $svc.replicas) 1 }}
{{- fail (printf "services.%s.replicas: %s keeps its state in one SQLite database, so it runs one replica with the sqlite store; use postgres to scale it out" $name $name) }}
{{- end }}
{{- if or $svc.autoscaling.enabled $svc.keda.enabled }}
{{- fail (printf "services.%s: autoscaling and KEDA need the postgres store (one SQLite database cannot be shared by several pods)" $name) }}
{{- end }}
{{- end }}
{{- if and (eq $mode "sqlite") $svc.enabled (eq $name "ingress") $svc.autoscaling.enabled }}
{{- fail "services.ingress: no autoscaling with the sqlite store: each ingress pod keeps unpublished webhooks in the spool on its own volume, and a pod the autoscaler removes strands them (its relay goes with it). Use the postgres store for ingress, or a fixed replicas count" }}
{{- end }}
{{- if and (hasKey $svc "keda") $svc.autoscaling.enabled $svc.keda.enabled }}
{{- fail (printf "services.%s: enable either autoscaling (HPA) or keda, not both (KEDA manages its own HPA)" $name) }}
{{- end }}
{{- end }}
{{- if and $postgres (not .Values.store.postgres.existingSecret) (not .Values.store.postgres.urls) }}
{{- fail (printf "%s use the postgres store: set store.postgres.existingSecret (a Secret with one database URL per service)" (join ", " $postgres)) }}
{{- end }}
{{- $keda := list }}
{{- range $name := list "inventory" "channel-notifier" }}
{{- if (index $.Values.services $name).keda.enabled }}{{ $keda = append $keda $name }}{{ end }}
{{- end }}
{{- if and $keda .Values.nats.existingSecret .Values.nats.credsKey (not (regexMatch "^A[A-Z2-7]{55}$" .Values.nats.account)) }}
{{- fail (printf "nats.account: with JWT authentication (nats.credsKey) the streams live in an account named by its public NKey (56 characters starting with A; nsc describe account <name> --field sub), and KEDA (%s) reads the consumer lag from that account, not %q" (join ", " $keda) .Values.nats.account) }}
{{- end }}
{{- if and .Values.services.console.enabled (not (or .Values.admin.existingSecret .Values.admin.token)) }}
{{- fail "services.console: the console logs operators in with the admin token and calls the other services' APIs with it: set admin.existingSecret (or, for development, admin.token)" }}
{{- end }}
{{- $grace := int .Values.terminationGracePeriodSeconds }}
{{- $needed := add (int .Values.preStopSleepSeconds) (int (include "stockwire.shutdownSeconds" .)) }}
{{- if lt $grace $needed }}
{{- fail (printf "terminationGracePeriodSeconds: %d s is shorter than the preStop sleep (%d s) plus the services' graceful shutdown (%s s): in-flight webhooks would be cut off; use at least %d" $grace (int .Values.preStopSleepSeconds) (include "stockwire.shutdownSeconds" .) $needed) }}
{{- end }}
{{- range $name, $source := .Values.sources }}
{{- if not (regexMatch "^[a-z0-9][a-z0-9_-]{0,63}$" $name) }}
{{- fail (printf "sources.%s: a source name must match ^[a-z0-9][a-z0-9_-]{0,63}$" $name) }}
{{- end }}
{{- if and (not $source.existingSecret) (not $source.secrets) }}
{{- fail (printf "sources.%s needs existingSecret (or, for development, secrets)" $name) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
stockwire.toml rendering. Helm reads numbers from values files as floats, and toToml would write
8080 as 8080.0, so the TOML is written here: integral floats become integers, strings are quoted
as JSON strings (a subset of TOML basic strings), maps become [tables], lists become arrays
(maps inside lists become inline tables), nulls are left out.
*/}}
{{- define "stockwire.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{- define "stockwire.toml.value" -}}
{{- $v := . }}
{{- if kindIs "string" $v }}{{ toJson $v }}
{{- else if kindIs "bool" $v }}{{ $v }}
{{- else if kindIs "float64" $v }}{{ if eq (floor $v) $v }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) }}{{ $v }}
{{- else if kindIs "slice" $v }}[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "stockwire.toml.value" $e }}{{ end }}]
{{- else if kindIs "map" $v }}{ {{- range $i, $k := keys $v | sortAlpha }}{{ if $i }},{{ end }} {{ include "stockwire.toml.key" $k }} = {{ include "stockwire.toml.value" (get $v $k) }}{{ end }} }
{{- else }}{{ fail (printf "stockwire.toml: cannot write %v (%s)" $v (kindOf $v)) }}
{{- end }}
{{- end }}

{{/* One [table] and its sub-tables. Call with (dict "path" "a.b" "table" $map). */}}
{{- define "stockwire.toml.table" -}}
[{{ .path }}]
{{- range $k, $v := .table }}
{{- if not (or (kindIs "map" $v) (kindIs "invalid" $v)) }}
{{ include "stockwire.toml.key" $k }} = {{ include "stockwire.toml.value" $v }}
{{- end }}
{{- end }}
{{- $path := .path }}
{{- range $k, $v := .table }}
{{- if kindIs "map" $v }}

{{ include "stockwire.toml.table" (dict "path" (printf "%s.%s" $path (include "stockwire.toml.key" $k)) "table" $v) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The configuration every service reads (STOCKWIRE_CONFIG). Secrets never go in here: they reach
the processes as environment variables from Secrets (STOCKWIRE__SECTION__KEY) or mounted files.
*/}}
{{- define "stockwire.configTree" -}}
{{- $v := .Values }}
{{- $nats := dict "servers" (splitList "," (nospace $v.nats.url)) }}
{{- if and $v.nats.existingSecret $v.nats.credsKey }}
{{- $_ := set $nats "creds_file" "/etc/stockwire/nats-auth/creds" }}
{{- end }}
{{- if and $v.nats.existingSecret $v.nats.nkeySeedKey }}
{{- $_ := set $nats "nkey_seed_file" "/etc/stockwire/nats-auth/nkey-seed" }}
{{- end }}
{{- if $v.nats.tls.existingSecret }}
{{- if $v.nats.tls.caKey }}{{ $_ := set $nats "tls_ca" "/etc/stockwire/nats-tls/ca.crt" }}{{ end }}
{{- if $v.nats.tls.certKey }}{{ $_ := set $nats "tls_cert" "/etc/stockwire/nats-tls/tls.crt" }}{{ end }}
{{- if $v.nats.tls.keyKey }}{{ $_ := set $nats "tls_key" "/etc/stockwire/nats-tls/tls.key" }}{{ end }}
{{- end }}
{{- $topology := merge (dict "replicas" $v.topology.replicas "duplicate_window_s" $v.topology.duplicateWindowSeconds) (deepCopy $v.topology.settings) }}
{{- $sources := dict }}
{{- range $name, $source := $v.sources }}
{{- $entry := dict "scheme" ($source.scheme | default "commerce-engine") "tolerance_s" ($source.toleranceSeconds | default 300) }}
{{- if $source.profile }}{{ $_ := set $entry "profile" $source.profile }}{{ end }}
{{- if $source.mapping }}{{ $_ := set $entry "mapping" (deepCopy $source.mapping) }}{{ end }}
{{- $_ := set $sources $name $entry }}
{{- end }}
{{- $tree := dict "nats" $nats "topology" $topology "sources" $sources }}
{{- range $name := include "stockwire.serviceNames" . | fromJsonArray }}
{{- $svc := index $v.services $name }}
{{- $section := dict "host" "0.0.0.0" "port" $svc.port }}
{{- if eq $name "ingress" }}{{ $_ := set $section "workers" $svc.workers }}{{ end }}
{{- if eq $name "console" }}{{ $section = merge $section (include "stockwire.consolePeers" $ | fromJson) }}{{ end }}
{{- $_ := set $tree $name (mergeOverwrite $section (deepCopy ($svc.config | default dict))) }}
{{- end }}
{{- mergeOverwrite $tree (deepCopy $v.config) | toJson }}
{{- end }}

{{- define "stockwire.configToml" -}}
# stockwire.toml, rendered by the stockwire Helm chart from its values.
{{- $tree := include "stockwire.configTree" . | fromJson }}
{{- range $k, $v := $tree }}
{{- if not (or (kindIs "map" $v) (kindIs "invalid" $v)) }}
{{ include "stockwire.toml.key" $k }} = {{ include "stockwire.toml.value" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := $tree }}
{{- if and (kindIs "map" $v) $v }}

{{ include "stockwire.toml.table" (dict "path" (include "stockwire.toml.key" $k) "table" $v) }}
{{- end }}
{{- end }}
{{ end }}

{{/* Volumes and mounts for NATS credentials and TLS material. */}}
{{- define "stockwire.natsVolumes" -}}
{{- $n := .Values.nats }}
{{- if and $n.existingSecret (or $n.credsKey $n.nkeySeedKey) }}
- name: nats-auth
  secret:
    secretName: {{ $n.existingSecret }}
    defaultMode: 0440
    items:
      {{- if $n.credsKey }}
      - key: {{ $n.credsKey }}
        path: creds
      {{- end }}
      {{- if $n.nkeySeedKey }}
      - key: {{ $n.nkeySeedKey }}
        path: nkey-seed
      {{- end }}
{{- end }}
{{- if $n.tls.existingSecret }}
- name: nats-tls
  secret:
    secretName: {{ $n.tls.existingSecret }}
    defaultMode: 0440
    items:
      {{- if $n.tls.caKey }}
      - key: {{ $n.tls.caKey }}
        path: ca.crt
      {{- end }}
      {{- if $n.tls.certKey }}
      - key: {{ $n.tls.certKey }}
        path: tls.crt
      {{- end }}
      {{- if $n.tls.keyKey }}
      - key: {{ $n.tls.keyKey }}
        path: tls.key
      {{- end }}
{{- end }}
{{- end }}

{{- define "stockwire.natsVolumeMounts" -}}
{{- $n := .Values.nats }}
{{- if and $n.existingSecret (or $n.credsKey $n.nkeySeedKey) }}
- name: nats-auth
  mountPath: /etc/stockwire/nats-auth
  readOnly: true
{{- end }}
{{- if $n.tls.existingSecret }}
- name: nats-tls
  mountPath: /etc/stockwire/nats-tls
  readOnly: true
{{- end }}
{{- end }}

{{/* NATS user/password/token from the Secret, as STOCKWIRE__NATS__* variables. */}}
{{- define "stockwire.natsEnv" -}}
{{- $n := .Values.nats }}
{{- if $n.existingSecret }}
{{- range $var, $key := dict "USER" $n.userKey "PASSWORD" $n.passwordKey "TOKEN" $n.tokenKey }}
{{- if $key }}
- name: STOCKWIRE__NATS__{{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $n.existingSecret }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The admin token, when one is configured. */}}
{{- define "stockwire.adminEnv" -}}
{{- if or .Values.admin.existingSecret .Values.admin.token }}
- name: STOCKWIRE_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      {{- if .Values.admin.existingSecret }}
      name: {{ .Values.admin.existingSecret }}
      key: {{ .Values.admin.secretKey }}
      {{- else }}
      name: {{ include "stockwire.devSecretName" . }}
      key: admin-token
      {{- end }}
{{- end }}
{{- end }}

{{/* A service's database URL in postgres mode. Call with (dict "root" $ "name" $svc). */}}
{{- define "stockwire.databaseUrlEnv" -}}
- name: STOCKWIRE__{{ include "stockwire.envSection" .name }}__DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "stockwire.postgresSecretName" .root }}
      key: {{ index .root.Values.store.postgres.keys .name }}
{{- end }}

{{/*
Environment of the outbox-relay. Call with (dict "root" $ "outboxes" (list "ingress" ...) "sidecar" bool).
In postgres mode the URLs come from the Secret and are spliced into the JSON list with Kubernetes'
$(VAR) expansion, so no URL ever appears in a manifest (URLs must not contain a double quote or a
backslash). In sqlite mode the relay is a sidecar and reads the SQLite file of the container beside
it, on the shared /data volume; the outbox is named after the pod.
*/}}
{{- define "stockwire.outboxRelayEnv" -}}
{{- $root := .root }}
{{- $outboxes := list }}
{{- range $name := .outboxes }}
{{- if not $.sidecar }}
- name: STOCKWIRE_OUTBOX_{{ include "stockwire.envSection" $name }}_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "stockwire.postgresSecretName" $root }}
      key: {{ index $root.Values.store.postgres.keys $name }}
{{- $outboxes = append $outboxes (dict "name" $name "database_url" (printf "$(STOCKWIRE_OUTBOX_%s_URL)" (include "stockwire.envSection" $name))) }}
{{- else }}
{{- /* Each pod has its own SQLite outbox: name it after the pod, so every one gets a leader. */}}
{{- $outboxes = append $outboxes (dict "name" "$(POD_NAME)" "database_url" (printf "sqlite:////data/%s.db" $name)) }}
{{- end }}
{{- end }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: STOCKWIRE__OUTBOX_RELAY__OUTBOXES
  value: {{ $outboxes | toJson | quote }}
{{- end }}

{{/*
One container of a service. Call with (dict "root" $ "name" $svc "outboxes" (list ...) "sidecar" bool);
outboxes and sidecar matter to the outbox-relay only.
*/}}
{{- define "stockwire.container" -}}
{{- $root := .root }}
{{- $name := .name }}
{{- $svc := index $root.Values.services $name }}
{{- $cmd := list "python" "-m" (include "stockwire.module" $name) }}
- name: {{ $name }}
  image: {{ include "stockwire.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  {{- if $root.Values.devReload }}
  command:
    - watchfiles
    - --target-type=command
    - --filter=python
    - {{ join " " $cmd | quote }}
    - /app/libs
    - /app/services
    - /app/stockwire
  {{- else }}
  command:
    {{- toYaml $cmd | nindent 4 }}
  {{- end }}
  ports:
    - name: {{ if eq $name "outbox-relay" }}relay-http{{ else }}http{{ end }}
      containerPort: {{ $svc.port }}
      protocol: TCP
  env:
    - name: STOCKWIRE_CONFIG
      value: /etc/stockwire/stockwire.toml
    - name: STOCKWIRE_DATA_DIR
      value: /data
    {{- with include "stockwire.natsEnv" $root | trim }}{{ . | nindent 4 }}{{ end }}
    {{- with include "stockwire.adminEnv" $root | trim }}{{ . | nindent 4 }}{{ end }}
    {{- if and (include "stockwire.hasStore" $name) (eq (include "stockwire.storeMode" (dict "root" $root "name" $name)) "postgres") }}
    {{- with include "stockwire.databaseUrlEnv" (dict "root" $root "name" $name) | trim }}{{ . | nindent 4 }}{{ end }}
    {{- end }}
    {{- if eq $name "ingress" }}
    {{- range $source, $spec := $root.Values.sources }}
    - name: STOCKWIRE__SOURCES__{{ upper $source }}__SECRETS
      valueFrom:
        secretKeyRef:
          {{- if $spec.existingSecret }}
          name: {{ $spec.existingSecret }}
          key: {{ $spec.secretKey | default "secrets" }}
          {{- else }}
          name: {{ include "stockwire.devSecretName" $root }}
          key: source-{{ $source }}-secrets
          {{- end }}
    {{- end }}
    {{- end }}
    {{- if eq $name "outbox-relay" }}
    {{- with include "stockwire.outboxRelayEnv" (dict "root" $root "outboxes" .outboxes "sidecar" .sidecar) | trim }}{{ . | nindent 4 }}{{ end }}
    {{- end }}
    {{- with $svc.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $port := ternary "relay-http" "http" (eq $name "outbox-relay") }}
  startupProbe:
    httpGet:
      path: /healthz
      port: {{ $port }}
    {{- toYaml $root.Values.probes.startup | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ $port }}
    {{- toYaml $root.Values.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ $port }}
    {{- toYaml $root.Values.probes.readiness | nindent 4 }}
  {{- /* The relay takes no traffic through a Service: it stops at once (a standby takes its lease). */}}
  {{- if and (ne $name "outbox-relay") $root.Values.preStopSleepSeconds }}
  lifecycle:
    preStop:
      exec:
        command: ["sleep", {{ int $root.Values.preStopSleepSeconds | toString | quote }}]
  {{- end }}
  resources:
    {{- toYaml $svc.resources | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: config
      mountPath: /etc/stockwire
      readOnly: true
    - name: data
      mountPath: /data
    - name: tmp
      mountPath: /tmp
    {{- with include "stockwire.natsVolumeMounts" $root | trim }}{{ . | nindent 4 }}{{ end }}
    {{- with concat $root.Values.extraVolumeMounts ($svc.extraVolumeMounts | default list) }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
The pod template of a service's workload. Call with (dict "root" $ "name" $svc).
*/}}
{{- define "stockwire.podTemplate" -}}
{{- $root := .root }}
{{- $name := .name }}
{{- $svc := index $root.Values.services $name }}
{{- $sidecar := include "stockwire.relaySidecar" . }}
metadata:
  labels:
    {{- /* podLabels never replace the chart's labels (the selector depends on them). */}}
    {{- $labels := mergeOverwrite (deepCopy ($root.Values.podLabels | default dict)) (deepCopy ($svc.podLabels | default dict)) }}
    {{- toYaml (mergeOverwrite $labels (include "stockwire.componentLabels" . | fromYaml)) | nindent 4 }}
  annotations:
    checksum/config: {{ include "stockwire.configToml" $root | sha256sum }}
    {{- with $svc.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "stockwire.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
  {{- with $svc.priorityClassName | default $root.Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  containers:
    {{- $outboxes := include "stockwire.postgresOutboxes" $root | fromJsonArray }}
    {{- with include "stockwire.container" (dict "root" $root "name" $name "outboxes" $outboxes "sidecar" false) | trim }}{{ . | nindent 4 }}{{ end }}
    {{- if $sidecar }}
    {{- /* The relay beside its writer: same pod, same /data volume, its own SQLite outbox. */}}
    {{- with include "stockwire.container" (dict "root" $root "name" "outbox-relay" "outboxes" (list $name) "sidecar" true) | trim }}{{ . | nindent 4 }}{{ end }}
    {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "stockwire.fullname" $root }}-config
    - name: tmp
      emptyDir:
        medium: Memory
        sizeLimit: {{ $root.Values.tmpSizeLimit }}
    {{- if or (eq (include "stockwire.workloadKind" .) "Deployment") (not $root.Values.store.sqlite.persistence.enabled) }}
    - name: data
      emptyDir: {}
    {{- end }}
    {{- with include "stockwire.natsVolumes" $root | trim }}{{ . | nindent 4 }}{{ end }}
    {{- $extra := concat $root.Values.extraVolumes ($svc.extraVolumes | default list) }}
    {{- if $sidecar }}{{ $extra = concat $extra ((index $root.Values.services "outbox-relay").extraVolumes | default list) }}{{ end }}
    {{- with $extra }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $svc.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $svc.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $svc.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $spread := $root.Values.topologySpread }}
  {{- if or $spread.enabled $svc.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- if $spread.enabled }}
    - maxSkew: {{ $spread.maxSkew }}
      topologyKey: {{ $spread.topologyKey }}
      whenUnsatisfiable: {{ $spread.whenUnsatisfiable }}
      labelSelector:
        matchLabels:
          {{- include "stockwire.componentSelectorLabels" . | nindent 10 }}
    {{- end }}
    {{- with $svc.topologySpreadConstraints }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
{{- end }}
