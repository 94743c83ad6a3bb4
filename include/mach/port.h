/*
 * <mach/port.h>: port names, rights, types and status, with GNU Mach's values.
 *
 * A port name is a 32-bit integer local to the task's name space. machvm builds names as
 * (index << 8) | generation, like Mach, so a stale name is unlikely to denote a new right.
 * Thread safety: constants and types only.
 */
#ifndef _MACH_PORT_H_
#define _MACH_PORT_H_

#include <stdint.h>
#include <mach/boolean.h>
#include <mach/std_types.h>

typedef uint32_t mach_port_name_t;
typedef mach_port_name_t mach_port_t;
typedef mach_port_t *mach_port_array_t;
typedef const mach_port_t *const_mach_port_array_t;

#define MACH_PORT_NULL     ((mach_port_t)0)
#define MACH_PORT_DEAD     ((mach_port_t)~0U)
#define MACH_PORT_VALID(name) \
	(((name) != MACH_PORT_NULL) && ((name) != MACH_PORT_DEAD))

#define MACH_PORT_INDEX(name)      ((name) >> 8)
#define MACH_PORT_GEN(name)        ((name) & 0xff)
#define MACH_PORT_MAKE(index, gen) (((index) << 8) | ((gen) & 0xff))

typedef natural_t mach_port_right_t;

#define MACH_PORT_RIGHT_SEND      ((mach_port_right_t)0)
#define MACH_PORT_RIGHT_RECEIVE   ((mach_port_right_t)1)
#define MACH_PORT_RIGHT_SEND_ONCE ((mach_port_right_t)2)
#define MACH_PORT_RIGHT_PORT_SET  ((mach_port_right_t)3)
#define MACH_PORT_RIGHT_DEAD_NAME ((mach_port_right_t)4)
#define MACH_PORT_RIGHT_NUMBER    ((mach_port_right_t)5)

typedef natural_t mach_port_type_t;
typedef mach_port_type_t *mach_port_type_array_t;

#define MACH_PORT_TYPE(right) ((mach_port_type_t)(1U << ((right) + 16)))
#define MACH_PORT_TYPE_NONE      ((mach_port_type_t)0)
#define MACH_PORT_TYPE_SEND      MACH_PORT_TYPE(MACH_PORT_RIGHT_SEND)
#define MACH_PORT_TYPE_RECEIVE   MACH_PORT_TYPE(MACH_PORT_RIGHT_RECEIVE)
#define MACH_PORT_TYPE_SEND_ONCE MACH_PORT_TYPE(MACH_PORT_RIGHT_SEND_ONCE)
#define MACH_PORT_TYPE_PORT_SET  MACH_PORT_TYPE(MACH_PORT_RIGHT_PORT_SET)
#define MACH_PORT_TYPE_DEAD_NAME MACH_PORT_TYPE(MACH_PORT_RIGHT_DEAD_NAME)

#define MACH_PORT_TYPE_SEND_RECEIVE (MACH_PORT_TYPE_SEND | MACH_PORT_TYPE_RECEIVE)
#define MACH_PORT_TYPE_SEND_RIGHTS  (MACH_PORT_TYPE_SEND | MACH_PORT_TYPE_SEND_ONCE)
#define MACH_PORT_TYPE_PORT_RIGHTS  (MACH_PORT_TYPE_SEND_RIGHTS | MACH_PORT_TYPE_RECEIVE)
#define MACH_PORT_TYPE_PORT_OR_DEAD (MACH_PORT_TYPE_PORT_RIGHTS | MACH_PORT_TYPE_DEAD_NAME)
#define MACH_PORT_TYPE_ALL_RIGHTS   (MACH_PORT_TYPE_PORT_OR_DEAD | MACH_PORT_TYPE_PORT_SET)

/* Dummy type bits that mach_port_type() reports for pending requests. */
#define MACH_PORT_TYPE_DNREQUEST 0x80000000U
#define MACH_PORT_TYPE_MAREQUEST 0x40000000U

typedef natural_t mach_port_urefs_t;
typedef integer_t mach_port_delta_t;
typedef natural_t mach_port_seqno_t;
typedef unsigned int mach_port_mscount_t;
typedef unsigned int mach_port_msgcount_t;
typedef unsigned int mach_port_rights_t;

#define MACH_PORT_UREFS_MAX ((mach_port_urefs_t)((1 << 16) - 1))
#define MACH_PORT_UREFS_OVERFLOW(urefs, delta) \
	(((delta) > 0) && \
	 ((((urefs) + (delta)) <= (urefs)) || (((urefs) + (delta)) > MACH_PORT_UREFS_MAX)))
#define MACH_PORT_UREFS_UNDERFLOW(urefs, delta) \
	(((delta) < 0) && ((0U - (mach_port_urefs_t)(delta)) > (urefs)))

typedef struct mach_port_status {
	mach_port_name_t mps_pset;       /* containing port set */
	mach_port_seqno_t mps_seqno;     /* sequence number */
	mach_port_mscount_t mps_mscount; /* make-send count */
	mach_port_msgcount_t mps_qlimit; /* queue limit */
	mach_port_msgcount_t mps_msgcount; /* number in the queue */
	mach_port_rights_t mps_sorights; /* how many send-once rights */
	boolean_t mps_srights;           /* do send rights exist? */
	boolean_t mps_pdrequest;         /* port-deleted requested? */
	boolean_t mps_nsrequest;         /* no-senders requested? */
} mach_port_status_t;

#define MACH_PORT_QLIMIT_DEFAULT ((mach_port_msgcount_t)5)
#define MACH_PORT_QLIMIT_MAX     ((mach_port_msgcount_t)16)

#endif /* _MACH_PORT_H_ */
