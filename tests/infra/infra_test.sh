#!/usr/bin/env bash
# Checks of infra/ (one case per argument; see CMakeLists.txt):
#
#   install   cmake --install puts every daemon, the tool runner, the variants
#             and infra/ where the units and manifests expect them
#   systemd   every unit passes systemd-analyze verify with no complaint (its
#             ExecStart pointed at the installed tree) and its exposure score
#             (systemd-analyze security --offline) stays under a bound: 2.0
#             for the DynamicUser services, 7.0 for sandboxd (root, namespaces)
#   env       every SAGEWAI_ setting a service's code reads is in its
#             infra/env template, with its default; no template names a
#             setting nothing reads
#   k8s       the manifests validate against the Kubernetes 1.30 schemas
#             (kubernetes-validate --strict, offline), liveness on /healthz,
#             the Prometheus annotations, restricted security contexts
#   kafka     topics-production.tsv covers topics.tsv, replication >= 3,
#             1 < min.insync.replicas < replication
#   postgres  infra/postgres/roles.sql applied twice to a private cluster:
#             one login role per service, no privileges beyond its schema
#
# Every service with a directory under services/ must have its unit, its
# template and its manifest: a new service without them fails here.
set -euo pipefail

src=${SW_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${SW_BUILD_DIR:-$src/build}
work=$(mktemp -d /tmp/sagewai-infra.XXXXXX)
trap 'rm -rf "$work"' EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}
ok() { echo "ok: $*"; }

services() {
	local d
	for d in "$src"/services/*/; do
		[ -f "$d/CMakeLists.txt" ] && basename "$d"
	done
}

install_tree() {
	cmake --install "$build" --prefix "$work/usr/local" >"$work/install.log" 2>&1 ||
		{ tail -n 20 "$work/install.log" >&2; fail "cmake --install"; }
}

case_install() {
	local svc
	install_tree
	for svc in $(services); do
		[ -x "$work/usr/local/bin/sagewai-$svc" ] || fail "bin/sagewai-$svc not installed"
	done
	[ -x "$work/usr/local/bin/sagewai" ] || fail "bin/sagewai not installed"
	[ -x "$work/usr/local/libexec/sagewai/sagewai-toolrunner" ] ||
		fail "libexec/sagewai/sagewai-toolrunner not installed"
	[ -f "$work/usr/local/share/sagewai/variants/base.json" ] || fail "variants not installed"
	[ -f "$work/usr/local/share/sagewai/infra/sagewai.target" ] || fail "units not installed"
	[ -f "$work/usr/local/share/doc/sagewai/OPERATIONS.md" ] || fail "docs not installed"
	ok "install tree complete for: $(services | tr '\n' ' ')"
}

case_systemd() {
	local svc f out score bound
	command -v systemd-analyze >/dev/null || fail "systemd-analyze missing (tools/setup installs systemd)"
	install_tree
	mkdir -p "$work/units"
	for svc in $(services); do
		f=$src/infra/systemd/sagewai-$svc.service
		[ -f "$f" ] || fail "no unit infra/systemd/sagewai-$svc.service"
		grep -q "sagewai-$svc.service" "$src/infra/systemd/sagewai.target" ||
			fail "sagewai.target does not want sagewai-$svc.service"
		sed "s:/usr/local/:$work/usr/local/:g" "$f" >"$work/units/sagewai-$svc.service"
	done
	cp "$src/infra/systemd/sagewai.target" "$work/units/"
	# verify exits 0 on unknown keys and bad values: any output is a failure
	out=$(cd "$work/units" && systemd-analyze verify --man=no ./*.service ./sagewai.target 2>&1) ||
		fail "systemd-analyze verify: $out"
	[ -z "$out" ] || fail "systemd-analyze verify complained: $out"
	# ... and it does complain: a unit with a bad key is caught
	sed 's/^Type=exec/Type=exec\nNoSuchKey=1/' "$work/units/sagewai-audit.service" >"$work/units/bad.service"
	out=$(cd "$work/units" && systemd-analyze verify --man=no ./bad.service 2>&1 || true)
	[ -n "$out" ] || fail "systemd-analyze verify does not report a bad key"
	rm "$work/units/bad.service"
	for svc in $(services); do
		out=$(cd "$work/units" && systemd-analyze security --offline=yes --no-pager \
			"./sagewai-$svc.service" 2>&1) || fail "security sagewai-$svc: $out"
		score=$(sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p' <<<"$out")
		[ -n "$score" ] || fail "no exposure score for sagewai-$svc: $out"
		bound=2.0
		[ "$svc" = sandboxd ] && bound=7.0
		awk -v s="$score" -v b="$bound" 'BEGIN { exit !(s <= b) }' ||
			fail "sagewai-$svc exposure $score > $bound"
		ok "sagewai-$svc.service verifies; exposure $score (bound $bound)"
	done
	grep -q '^u sagewai-sandboxd ' "$src/infra/systemd/sagewai.sysusers" ||
		fail "sysusers: no sagewai-sandboxd user"
}

# the SAGEWAI_ settings the code of service svc reads
settings_of() {
	local svc=$1
	{
		grep -ohE '"SAGEWAI_[A-Z0-9_]+"' "$src/services/$svc"/*.c
		# the frame's own: libs/core/config.c's table and libs/service
		grep -ohE '"SAGEWAI_[A-Z0-9_]+"' "$src/libs/core/config.c" "$src/libs/service"/*.c
	} | tr -d '"' | grep -vx 'SAGEWAI_CONFIG' | sort -u
}

case_env() {
	local svc f k missing extra
	for svc in $(services); do
		f=$src/infra/env/$svc.env
		[ -f "$f" ] || fail "no template infra/env/$svc.env"
		missing=()
		for k in $(settings_of "$svc"); do
			grep -qE "^#?$k=" "$f" || missing+=("$k")
		done
		[ ${#missing[@]} = 0 ] || fail "infra/env/$svc.env lacks ${missing[*]}"
		extra=()
		for k in $(grep -oE '^#?SAGEWAI_[A-Z0-9_]+=' "$f" | tr -d '#=' | sort -u); do
			settings_of "$svc" | grep -qx "$k" ||
				grep -rqE "\"$k(_FILE)?\"" "$src/libs" || extra+=("$k")
		done
		[ ${#extra[@]} = 0 ] || fail "infra/env/$svc.env names settings nothing reads: ${extra[*]}"
		# a template never holds a value of a secret: secrets are *_FILE
		if grep -E '^[^#]*(TOKEN|_KEY|PASSWORD)=.+' "$f"; then
			fail "infra/env/$svc.env sets a secret inline"
		fi
		ok "infra/env/$svc.env: $(settings_of "$svc" | wc -l) settings"
	done
}

case_k8s() {
	local svc f
	python3 -c 'import kubernetes_validate' 2>/dev/null ||
		fail "kubernetes-validate missing (tools/setup installs it)"
	for svc in $(services); do
		f=$src/infra/k8s/$svc.yaml
		[ -f "$f" ] || fail "no manifest infra/k8s/$svc.yaml"
		grep -q 'path: /healthz' "$f" || fail "$svc.yaml: no probe on /healthz"
		grep -q 'prometheus.io/scrape: "true"' "$f" || fail "$svc.yaml: no scrape annotation"
		grep -q 'allowPrivilegeEscalation: false' "$f" || fail "$svc.yaml: escalation allowed"
		grep -q 'drop: \["ALL"\]' "$f" || fail "$svc.yaml: capabilities not dropped"
		if [ "$svc" != sandboxd ]; then
			grep -q 'runAsNonRoot: true' "$f" || fail "$svc.yaml: may run as root"
			grep -q 'readOnlyRootFilesystem: true' "$f" || fail "$svc.yaml: writable root"
		else
			grep -q '^kind: DaemonSet' "$f" || fail "sandboxd.yaml: not a DaemonSet"
			grep -q 'privileged: false' "$f" || fail "sandboxd.yaml: privileged"
		fi
	done
	python3 -m kubernetes_validate --strict -k 1.30.0 --quiet "$src"/infra/k8s/*.yaml ||
		fail "kubernetes-validate"
	# ... and it does reject: a manifest with an unknown field
	sed 's/containerPort:/containerPortX:/' "$src/infra/k8s/worker.yaml" >"$work/bad.yaml"
	if python3 -m kubernetes_validate --strict -k 1.30.0 --quiet "$work/bad.yaml" >/dev/null 2>&1; then
		fail "kubernetes-validate accepts a broken manifest"
	fi
	ok "manifests validate (Kubernetes 1.30, strict): $(ls "$src"/infra/k8s/*.yaml | wc -l) files"
}

case_kafka() {
	local topic parts p2 repl isr ret cl out n=0
	while IFS=$'\t' read -r topic parts _; do
		case "$topic" in ''|'#'*) continue ;; esac
		read -r p2 repl isr ret cl < <(awk -F'\t' -v t="$topic" '$1 == t { print $2, $3, $4, $5, $6 }' \
			"$src/infra/kafka/topics-production.tsv")
		[ -n "${p2:-}" ] || fail "$topic is not in topics-production.tsv"
		[ "$p2" -ge "$parts" ] || fail "$topic: $p2 partitions in production, $parts in topics.tsv"
		[ "$repl" -ge 3 ] || fail "$topic: replication $repl < 3"
		[ "$isr" -ge 2 ] && [ "$isr" -lt "$repl" ] || fail "$topic: min.insync.replicas $isr"
		[[ "$ret" =~ ^-?[0-9]+$ ]] || fail "$topic: retention.ms '$ret'"
		[[ "$cl" =~ ^(delete|compact|compact,delete)$ ]] || fail "$topic: cleanup.policy '$cl'"
		n=$((n + 1))
		p2=
	done <"$src/infra/kafka/topics.tsv"
	out=$("$src/infra/kafka/create-topics" 127.0.0.1:9 --dry-run) || fail "create-topics --dry-run"
	[ "$(grep -c -- '--replication-factor 3 --config min.insync.replicas=2' <<<"$out")" = "$n" ] ||
		fail "create-topics --dry-run: $out"
	ok "$n topics: replication 3, min.insync.replicas 2"
}

case_postgres() {
	local dsn svc out
	# shellcheck source=../../tools/lib/pg.sh
	. "$src/tools/lib/pg.sh"
	mkdir -p "$work/pgsock"
	chmod 755 "$work"
	sw_pg_init "$work" >/dev/null || fail "initdb"
	sw_pg_start "$work" >/dev/null || fail "pg start"
	trap 'sw_pg_stop "$work" immediate >/dev/null 2>&1; rm -rf "$work"' EXIT
	dsn=$(sw_pg_dsn "$work")
	for _ in 1 2; do # idempotent
		psql "$dsn" -X -q -v ON_ERROR_STOP=1 -f "$src/infra/postgres/roles.sql" >/dev/null ||
			fail "roles.sql"
	done
	for svc in $(services); do
		out=$(psql "$dsn" -X -At -c "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole,
			rolreplication, rolbypassrls, (SELECT count(*) FROM pg_auth_members m
			WHERE m.member = r.oid), (SELECT pg_get_userbyid(nspowner) FROM pg_namespace
			WHERE nspname = '$svc') FROM pg_roles r WHERE rolname = 'sagewai_$svc'")
		[ "$out" = "t|f|f|f|f|f|0|sagewai_$svc" ] ||
			fail "role sagewai_$svc: '$out' (login|super|createdb|createrole|repl|bypassrls|memberships|owner of schema $svc)"
	done
	out=$(psql "$dsn" -X -At -c "SELECT has_schema_privilege('sagewai_worker', 'scheduler', 'USAGE'),
		has_schema_privilege('sagewai_worker', 'public', 'CREATE')")
	[ "$out" = "f|f" ] || fail "sagewai_worker reaches another schema or public: $out"
	# the one way across: the scheduler may use identity's schema (its
	# input_matches function; no table of it), no other role may
	out=$(psql "$dsn" -X -At -c "SELECT string_agg(r.rolname || '=' ||
		has_schema_privilege(r.rolname, 'identity', 'USAGE')::text, ',' ORDER BY r.rolname)
		FROM pg_roles r WHERE r.rolname LIKE 'sagewai\\_%' AND r.rolname <> 'sagewai_identity'")
	[ "$out" = "sagewai_audit=false,sagewai_policy=false,sagewai_sandboxd=false,sagewai_scheduler=true,sagewai_worker=false" ] ||
		fail "USAGE on schema identity: $out (only sagewai_scheduler's)"
	ok "roles.sql: $(services | wc -l) roles, each owning only its schema"
}

case "${1:-}" in
install) case_install ;;
systemd) case_systemd ;;
env) case_env ;;
k8s) case_k8s ;;
kafka) case_kafka ;;
postgres) case_postgres ;;
*) echo "usage: $0 install|systemd|env|k8s|kafka|postgres" >&2; exit 2 ;;
esac
