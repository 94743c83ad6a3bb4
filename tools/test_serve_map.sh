#!/bin/sh
# tools/test_serve_map.sh MACHVM [MAP_FILE_EXAMPLE]: a file served by `machvm serve` in one
# process reads, through `machvm map` in another, as the bytes sha256sum(1) hashes; the
# example examples/map_file (when given) writes through its mapping, and the file then
# has the write, both as sha256sum sees it on disk and as a new `machvm map` reads it.
# Exit 77 (skipped) where memory objects cannot be mapped (no usable userfaultfd).
set -u
machvm=$1
example=${2:-}
tmp=$(mktemp -d)
serve_pid=
cleanup() {
	[ -n "$serve_pid" ] && kill -TERM "$serve_pid" 2>/dev/null && wait "$serve_pid"
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
MACHVM_RUNTIME_DIR=$tmp/run
export MACHVM_RUNTIME_DIR

# Several MiB of random bytes and an odd tail, so the last page is partly past the end.
head -c 6000001 /dev/urandom > "$tmp/file" || fail "cannot make the file"
"$machvm" serve file "$tmp/file" --name tst.obj > "$tmp/serve.out" 2>&1 &
serve_pid=$!
i=0
until grep -q '^ready:' "$tmp/serve.out"; do
	i=$((i + 1))
	[ $i -gt 200 ] && { cat "$tmp/serve.out"; fail "serve did not get ready"; }
	kill -0 "$serve_pid" 2>/dev/null || { cat "$tmp/serve.out"; fail "serve exited"; }
	sleep 0.05
done

# map_sha NAME [ARGS]: run machvm map, check its size line, print its digest.
map_sha() {
	"$machvm" map "$@" > "$tmp/map.out" 2>&1
	rc=$?
	cat "$tmp/map.out" >&2
	[ $rc -eq 77 ] && exit 77
	[ $rc -eq 0 ] || fail "machvm map $* exited $rc"
	awk '$1 == "sha256" { print $2 }' "$tmp/map.out"
}

want=$(sha256sum "$tmp/file" | cut -d' ' -f1)
got=$(map_sha tst.obj) || exit $?
[ "$got" = "$want" ] || fail "machvm map: $got, sha256sum: $want"
grep -q '^size 6000001$' "$tmp/map.out" || fail "machvm map did not print size 6000001"
echo "machvm map and sha256sum agree: $got"

# --size without asking the info port: the first 8 KiB.
got=$(map_sha tst.obj --size 8K) || exit $?
want=$(head -c 8192 "$tmp/file" | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "machvm map --size 8K: $got, sha256sum: $want"

# A second server cannot take a live name: exit 1 (and the first one keeps serving).
"$machvm" serve file "$tmp/file" --name tst.obj > "$tmp/serve2.out" 2>&1
[ $? -eq 1 ] || fail "a second serve of a live name did not exit 1"
grep -q '^ready:' "$tmp/serve2.out" && fail "a second serve of a live name got ready"
# A name nobody checked in: exit 1. Bad usage: exit 2.
"$machvm" serve file "$tmp/file" --name .bad > /dev/null 2>&1
[ $? -eq 2 ] || fail "machvm serve --name .bad did not exit 2"
"$machvm" map no.such.name > /dev/null 2>&1
[ $? -eq 1 ] || fail "machvm map of an unknown name did not exit 1"
"$machvm" map > /dev/null 2>&1
[ $? -eq 2 ] || fail "machvm map without a name did not exit 2"
"$machvm" map tst.obj --size 12Q > /dev/null 2>&1
[ $? -eq 2 ] || fail "machvm map --size 12Q did not exit 2"

if [ -n "$example" ]; then
	"$example" tst.obj "$tmp/file" || { rc=$?; [ $rc -eq 77 ] && exit 77; fail "map_file exited $rc"; }
	want=$(sha256sum "$tmp/file" | cut -d' ' -f1)
	got=$(map_sha tst.obj) || exit $?
	[ "$got" = "$want" ] || fail "after map_file: machvm map $got, sha256sum $want"
	echo "after examples/map_file wrote: machvm map and sha256sum agree: $got"
fi

# A clean stop: SIGTERM, exit 0, the names checked out.
kill -TERM "$serve_pid"
wait "$serve_pid"
rc=$?
serve_pid=
cat "$tmp/serve.out"
[ $rc -eq 0 ] || fail "serve exited $rc after SIGTERM"
"$machvm" map tst.obj > /dev/null 2>&1
[ $? -eq 1 ] || fail "the name is still there after serve stopped"
echo "PASS"
