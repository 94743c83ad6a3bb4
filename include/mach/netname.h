/*
 * <mach/netname.h>: the network name service of Mach 3, for the processes of one host.
 * A name checked in by a process names a send right other processes can look up; it
 * disappears when the process checks it out or dies. There is no central server: a
 * null server_port (name_server_port) means this host's service, reached through the
 * runtime directory of <machvm/node.h>.
 * Thread safety: every function may be called from any thread.
 */
#ifndef _MACH_NETNAME_H_
#define _MACH_NETNAME_H_

#include <mach/mach_types.h>
#include <machvm/export.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NETNAME_SUCCESS         (0)
#define NETNAME_PENDING         (-1)
#define NETNAME_NOT_YOURS       (1000)
#define NETNAME_NOT_CHECKED_IN  (1001)
#define NETNAME_NO_SUCH_HOST    (1002)
#define NETNAME_HOST_NOT_FOUND  (1003)
#define NETNAME_INVALID_PORT    (1004)

typedef char netname_name_t[80];

/* The name server of this host: MACH_PORT_NULL stands for it. */
#define name_server_port MACH_PORT_NULL

MVM_EXTERN kern_return_t netname_check_in(mach_port_t server_port, const char *port_name,
    mach_port_t signature, mach_port_t port_id);
MVM_EXTERN kern_return_t netname_look_up(mach_port_t server_port, const char *host_name,
    const char *port_name, mach_port_t *port_id);
MVM_EXTERN kern_return_t netname_check_out(mach_port_t server_port, const char *port_name,
    mach_port_t signature);

#ifdef __cplusplus
}
#endif

#endif /* _MACH_NETNAME_H_ */
