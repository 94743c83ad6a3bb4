#!/bin/sh
# Install the build into a scratch prefix, then build and run a program that includes only
# <mach/mach.h> and links with `pkg-config --cflags --libs machvm`.
set -eu
build=$1
cc=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
pc=$(find "$tmp/prefix" -name machvm.pc | head -n 1)
[ -n "$pc" ] || { echo "machvm.pc not installed"; exit 1; }
cat > "$tmp/prog.c" <<'C'
#include <mach/mach.h>
#include <stdio.h>
int main(void)
{
	mach_port_t p;
	kern_return_t kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &p);
	if (kr != KERN_SUCCESS) {
		printf("mach_port_allocate: %s\n", mach_error_string(kr));
		return 1;
	}
	kr = mach_port_destroy(mach_task_self(), p);
	printf("pkg-config consumer: %s\n", mach_error_string(kr));
	return kr == KERN_SUCCESS ? 0 : 1;
}
C
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
# The sanitizer builds need their runtime in the program too.
case "${3:-}" in
address) extra="-fsanitize=address,undefined" ;;
thread) extra="-fsanitize=thread" ;;
*) extra="" ;;
esac
$cc -std=gnu11 -Wall -Wextra -Werror $extra -o "$tmp/prog" "$tmp/prog.c" \
	$(pkg-config --cflags machvm) $(pkg-config --libs machvm) -Wl,-rpath,"$(pkg-config --variable=libdir machvm)"
"$tmp/prog"
