# Warnings for our own code: -Wall -Wextra -Werror, plus a few that catch real bugs.
set(MVM_WARNINGS -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
    -Wno-unused-parameter -Wformat=2 -Wvla)
