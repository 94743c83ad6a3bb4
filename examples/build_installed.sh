#!/bin/sh
# examples/build_installed.sh BUILD CC SANITIZE EXAMPLE.c...: install the build into a
# scratch prefix and compile each example with `pkg-config --cflags --libs machvm` alone,
# so that an example using anything but the installed API fails to build.
set -eu
build=$1
cc=$2
sanitize=$3
shift 3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
pc=$(find "$tmp/prefix" -name machvm.pc | head -n 1)
[ -n "$pc" ] || { echo "machvm.pc not installed"; exit 1; }
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
case "$sanitize" in
address) extra="-fsanitize=address,undefined" ;;
thread) extra="-fsanitize=thread" ;;
*) extra="" ;;
esac
for src in "$@"; do
	$cc -std=gnu11 -Wall -Wextra -Werror $extra -o "$tmp/$(basename "$src" .c)" "$src" \
		$(pkg-config --cflags machvm) $(pkg-config --libs machvm)
	echo "built $(basename "$src") against the installed headers and library"
done
