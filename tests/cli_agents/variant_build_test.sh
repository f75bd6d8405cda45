#!/usr/bin/env bash
# variant_build_test: tools/variant-build, black-box.
#   - malformed manifests are refused, naming the line (no network needed);
#   - a tarball holding a symlink, or a path outside package/, is refused
#     before anything is unpacked (pre-seeded cache whose hash the manifest
#     pins: no network needed);
#   - the catalogue's variants are built (tools/setup did it) for their
#     current manifests (--check);
#   - with the registry: a pinned package builds a read-only root in a
#     content-addressed directory with its bin link and the STORE/NAME link;
#     a second run prints nothing and downloads nothing; a cached tarball
#     that was altered is fetched again and verified; a wrong pin fails with
#     "integrity mismatch", leaving no root, no partial build, no cached file.
# Exits 77 (skipped) only for the registry part when the npm registry is
# unreachable and the catalogue's roots are not built.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
vb=$root/tools/variant-build
t=$(mktemp -d /tmp/sw-variant-build-XXXXXX)
trap 'chmod -R u+w "$t" 2>/dev/null; rm -rf "$t"' EXIT
mkdir -p "$t/m" "$t/cache"
fail() {
	echo "FAIL: $*" >&2
	exit 1
}

refused() { # manifest-text expected-message
	printf '%s\n' "$1" >"$t/m/bad.manifest"
	if out=$("$vb" --store "$t/store" --cache "$t/cache" --manifests "$t/m" bad 2>&1); then
		fail "accepted: $1"
	fi
	case $out in *"$2"*) ;; *) fail "'$1': '$out' lacks '$2'" ;; esac
}

pin=sha512-EqrwbRcI7M5y8jQlayIfTMmbZJ2OQaLOc7KwIWKdryQCdKWUEFr+C9rMovZUuj2Asndi7aqLujEzRtr471gncg==
refused "npm @anthropic-ai/claude-code ^2.1.0 $pin" "an exact version is required"
refused "npm @anthropic-ai/claude-code latest $pin" "an exact version is required"
refused "npm @anthropic-ai/claude-code 2.1.197 sha1-abc" "integrity must be sha512"
refused "npm @anthropic-ai/claude-code 2.1.197" "npm NAME VERSION INTEGRITY"
refused "npm ../../etc 1.0.0 $pin" "bad package name"
refused "npm a 1.0.0 $pin as ../x" "bad install name"
refused "bin claude node_modules/../../etc/passwd" "bin COMMAND node_modules/PATH"
refused "bin claude /usr/bin/env" "bin COMMAND node_modules/PATH"
refused "curl http://example.invalid/x" "unknown directive 'curl'"
refused "include ../base" "include NAME"
refused "node twenty" "node MAJOR"
if "$vb" --manifests "$t/m" --store "$t/store" no-such >/dev/null 2>&1; then
	fail "a variant without a manifest was accepted"
fi
"$vb" --manifests "$t/m" --store relative/path bad >/dev/null 2>&1 && fail "relative store"

# A tarball with a symlink, or with a path outside package/: refused
# before unpacking (the cache is pre-seeded; the pin matches it).
mkdir -p "$t/evil/package"
echo '{"name": "evil", "version": "1.0.0"}' >"$t/evil/package/package.json"
ln -s /etc/shadow "$t/evil/package/link"
tar -czf "$t/cache/evil-1.0.0.tgz" -C "$t/evil" package
sum=sha512-$(openssl dgst -sha512 -binary "$t/cache/evil-1.0.0.tgz" | base64 -w0)
refused "npm evil 1.0.0 $sum" "holds something other than files and directories"
rm "$t/evil/package/link"
mkdir -p "$t/evil/other" && echo x >"$t/evil/other/f"
tar -czf "$t/cache/evil-1.0.0.tgz" -C "$t/evil" package other
sum=sha512-$(openssl dgst -sha512 -binary "$t/cache/evil-1.0.0.tgz" | base64 -w0)
refused "npm evil 1.0.0 $sum" "paths outside package/"
[ -z "$(ls -A "$t/store" 2>/dev/null | grep -v '^\.lock$')" ] || fail "refusals left something"

# The catalogue's variants, built by tools/setup.
if ! "$vb" --check claude-code codex gemini multi; then
	if ! timeout 20 npm ping >/dev/null 2>&1; then
		echo "SKIP: the agent CLI variants are not built and the npm registry is unreachable"
		exit 77
	fi
	fail "the catalogue's variants are not built although the registry is reachable (tools/setup)"
fi

if ! timeout 20 npm ping >/dev/null 2>&1; then
	echo "SKIP (registry part): the npm registry is unreachable"
	exit 77
fi
cat >"$t/m/small.manifest" <<EOF
npm @anthropic-ai/claude-code 2.1.197 $pin
bin claude-wrapper node_modules/@anthropic-ai/claude-code/cli-wrapper.cjs
EOF
out=$("$vb" --store "$t/store" --cache "$t/cache" --manifests "$t/m" small)
case $out in *"built small"*) ;; *) fail "first build said: $out" ;; esac
link=$(readlink "$t/store/small")
[[ $link =~ ^small-[0-9a-f]{16}$ ]] || fail "STORE/small -> $link"
[ -f "$t/store/$link/node_modules/@anthropic-ai/claude-code/package.json" ] || fail "not unpacked"
[ "$(readlink "$t/store/$link/bin/claude-wrapper")" = \
	"../node_modules/@anthropic-ai/claude-code/cli-wrapper.cjs" ] || fail "bin link"
[ "$(stat -c %a "$t/store/$link")" = 555 ] || fail "root not read-only"
[ -z "$(find "$t/store/$link" -perm /222 ! -type l)" ] || fail "something writable in the root"
tgz=$t/cache/@anthropic-ai+claude-code-2.1.197.tgz
before=$(stat -c %Y.%i "$tgz")
sleep 1
out=$("$vb" --store "$t/store" --cache "$t/cache" --manifests "$t/m" small)
[ -z "$out" ] || fail "second run said: $out"
[ "$(stat -c %Y.%i "$tgz")" = "$before" ] || fail "the tarball was fetched again"
"$vb" --check --store "$t/store" --manifests "$t/m" small || fail "--check"

# an altered cached tarball is fetched again (and verified) for a new build
echo garbage >>"$tgz"
chmod -R u+w "$t/store/$link" && rm -rf "${t:?}/store/$link"
out=$("$vb" --store "$t/store" --cache "$t/cache" --manifests "$t/m" small)
case $out in *"built small"*) ;; *) fail "rebuild said: $out" ;; esac
[ "sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)" = "$pin" ] || fail "cache not fixed"

# a wrong pin: integrity mismatch, nothing left
bad=sha512-A${pin#sha512-E}
printf 'npm @anthropic-ai/claude-code 2.1.197 %s\n' "$bad" >"$t/m/wrong.manifest"
rm -f "$tgz"
if out=$("$vb" --store "$t/store" --cache "$t/cache" --manifests "$t/m" wrong 2>&1); then
	fail "a wrong pin was accepted"
fi
case $out in *"integrity mismatch"*) ;; *) fail "wrong pin said: $out" ;; esac
[ ! -e "$t/store/wrong" ] && [ -z "$(ls -d "$t/store"/.build-* 2>/dev/null)" ] || fail "leftovers"
[ ! -e "$tgz" ] || fail "the mismatching tarball was cached"
echo "variant_build_test: ok"
