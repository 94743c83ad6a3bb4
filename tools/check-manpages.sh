#!/bin/sh
# tools/check-manpages.sh: every exported function has a man page, and every page is clean.
#
# Usage: tools/check-manpages.sh [ROOT]      (ROOT defaults to the directory above tools/)
#
# 1. Lists every function declared with MVM_EXTERN in ROOT/include/**/*.h, that is every
#    declaration of the form `MVM_EXTERN <type> <name>(...)`, where the type may contain
#    `*`, qualifiers and __attribute__((...)), and the declaration may span lines.
#    Comments and preprocessor lines are ignored; MVM_EXTERN variables (no parenthesis
#    before the `;`) are not functions and need no page. Each name needs
#    ROOT/doc/man/man3/<name>.3 (a full page or a `.so man3/<other>.3` stub).
# 2. Formats every page under ROOT/doc/man/man*/ with `man --warnings -l` (man-db) and
#    with `groff -man -ww -z`, each when that command exists, from ROOT/doc/man so that
#    `.so` requests resolve; any diagnostic is a failure.
#
# Exit status: 0 when everything passes, 1 when a page is missing or a page warns,
# 2 on bad usage. Only POSIX sh, find, grep, sed and awk are used for the parsing.

set -u

usage() {
	echo "usage: $0 [ROOT]" >&2
	exit 2
}

case $# in
0) root=$(cd "$(dirname "$0")/.." && pwd) || exit 2 ;;
1) case $1 in -*) usage ;; esac
   root=$(cd "$1" && pwd) || exit 2 ;;
*) usage ;;
esac

incdir=$root/include
mandir=$root/doc/man
status=0

if [ ! -d "$incdir" ]; then
	echo "check-manpages: no directory $incdir" >&2
	exit 2
fi

# Print the name of every MVM_EXTERN function declared in the files given as arguments.
exported_functions() {
	awk '
	FNR == 1 && NR != 1 { scan(); text = "" }
	{ text = text $0 "\n" }
	END { scan() }

	# Remove /* */ and // comments (keeping the newlines of block comments).
	function strip_comments(s,    out, b, l, e, c) {
		out = ""
		for (;;) {
			b = index(s, "/*")
			l = index(s, "//")
			if (b == 0 && l == 0)
				return out s
			if (l != 0 && (b == 0 || l < b)) {
				out = out substr(s, 1, l - 1)
				s = substr(s, l + 2)
				e = index(s, "\n")
				if (e == 0)
					return out
				s = substr(s, e)
			} else {
				out = out substr(s, 1, b - 1) " "
				s = substr(s, b + 2)
				e = index(s, "*/")
				if (e == 0)
					return out
				c = substr(s, 1, e - 1)
				gsub(/[^\n]/, "", c)
				out = out c
				s = substr(s, e + 2)
			}
		}
	}

	function scan(    s, n, lines, i, cont, code, nst, st, j, rest, p, pre) {
		s = strip_comments(text)
		n = split(s, lines, "\n")
		code = ""
		cont = 0
		for (i = 1; i <= n; i++) {
			# Preprocessor lines, with their backslash continuations.
			if (cont || lines[i] ~ /^[ \t]*#/) {
				cont = (lines[i] ~ /\\[ \t]*$/)
				continue
			}
			code = code " " lines[i]
		}
		gsub(/[\t\r]/, " ", code)
		nst = split(code, st, /[;{}]/)
		for (j = 1; j <= nst; j++) {
			if (!match(st[j], /(^|[^A-Za-z0-9_])MVM_EXTERN([^A-Za-z0-9_]|$)/))
				continue
			rest = substr(st[j], RSTART + RLENGTH)
			# __attribute__((...)) may hold one level of inner parentheses.
			gsub(/__attribute__ *\(\(([^()]|\([^()]*\))*\)\)/, " ", rest)
			p = index(rest, "(")
			if (p == 0)
				continue                   # a variable
			pre = substr(rest, 1, p - 1)
			sub(/ +$/, "", pre)
			if (!match(pre, /[A-Za-z_][A-Za-z0-9_]*$/))
				continue                   # e.g. a function pointer declarator
			if (RSTART == 1)
				continue                   # no type before the name: not a declaration
			print substr(pre, RSTART, RLENGTH)
		}
	}
	' "$@"
}

headers=$(find "$incdir" -type f -name '*.h' | LC_ALL=C sort)
if [ -z "$headers" ]; then
	echo "check-manpages: no headers under $incdir" >&2
	exit 2
fi

# Header paths contain no blanks in this tree; word splitting is intended here.
# shellcheck disable=SC2086
functions=$(exported_functions $headers | LC_ALL=C sort -u)
nfunc=$(printf '%s\n' "$functions" | grep -c .)

missing=""
for f in $functions; do
	[ -f "$mandir/man3/$f.3" ] || missing="$missing $f"
done
if [ -n "$missing" ]; then
	echo "check-manpages: exported functions without doc/man/man3/<name>.3:"
	for f in $missing; do
		echo "  $f"
	done
	status=1
fi

# Lint every page.
pages=""
if [ -d "$mandir" ]; then
	pages=$(cd "$mandir" && find . -path './man[1-9]/*' -type f -name '*.[1-9]' | sed 's|^\./||' | LC_ALL=C sort)
fi
npages=$(printf '%s\n' "$pages" | grep -c .)

have_man=0
have_groff=0
command -v man >/dev/null 2>&1 && have_man=1
command -v groff >/dev/null 2>&1 && have_groff=1
if [ $have_man = 0 ] && [ $have_groff = 0 ]; then
	echo "check-manpages: neither man nor groff found; pages not linted" >&2
fi

nbad=0
for p in $pages; do
	diag=""
	[ -s "$mandir/$p" ] || diag="empty page
"
	if [ $have_man = 1 ]; then
		d=$(cd "$mandir" && MANWIDTH=80 MAN_KEEP_FORMATTING= LC_ALL=C.UTF-8 \
		    man --warnings -l -E UTF-8 "$p" 2>&1 >/dev/null)
		[ -n "$d" ] && diag="$diag$d
"
	fi
	if [ $have_groff = 1 ]; then
		d=$(cd "$mandir" && LC_ALL=C.UTF-8 groff -man -ww -z -k -Tutf8 "$p" 2>&1)
		[ -n "$d" ] && diag="$diag$d
"
	fi
	if [ -n "$diag" ]; then
		echo "check-manpages: $p:"
		printf '%s' "$diag" | sed 's/^/  /'
		nbad=$((nbad + 1))
		status=1
	fi
done

if [ $status = 0 ]; then
	echo "check-manpages: $nfunc exported functions documented, $npages pages clean"
else
	[ $nbad -gt 0 ] && echo "check-manpages: $nbad of $npages pages have warnings"
fi
exit $status
