/*
 * tests/integration/test_node_ipc.c: the IPC semantics of one process, repeated across
 * processes (issue 6): request/reply with send-once reply ports; every disposition of a
 * right in a body; a send right passed to a third process and used there; no-senders
 * only when the last remote send right goes; send-once notifications for a destroyed
 * remote send-once right; a port that dies becomes a dead name elsewhere; a receive
 * right that moves to another process with messages queued on it (order and sequence
 * numbers at the new owner, old senders still reach it) and back; out-of-line data and
 * port arrays; per-sender order and sequence numbers with many senders.
 *
 * Every test forks its actors (see mvm_node_test.h); each actor ends with its node's
 * exports and proxies back to their base (1 export: its name service port; 0 proxies)
 * and its IPC layer quiescent.
 */

#include "mvm_node_test.h"

/* Exports a node keeps for good: the look-up port of the name service. */
#define BASE_EXPORTS 1

/* An actor's last word: nothing left of the other nodes, nothing leaked. */
static void
finish(void)
{
	NT_SETTLE(BASE_EXPORTS, 0);
	NT_QUIESCENT();
}

/* ---- request and reply ------------------------------------------------------------------ */

#define RPC_N 300

static void
rpc_server(long arg)
{
	mach_port_t s = nt_port();
	nt_buf u;

	(void)arg;
	nt_check_in("srv", s);
	for (uint32_t i = 0; i < RPC_N; i++) {
		nt_expect(s, &u, 1000 + (int)i);
		/* Sequence numbers are the receiving port's, one per message taken. */
		NT_EQ(u.h.msgh_seqno, i);
		NT_EQ(MACH_MSGH_BITS_LOCAL(u.h.msgh_bits), MACH_MSG_TYPE_PORT_SEND);
		NT_EQ(MACH_MSGH_BITS_REMOTE(u.h.msgh_bits), MACH_MSG_TYPE_PORT_SEND_ONCE);
		NT_EQ(u.h.msgh_local_port, s);
		NT_CHECK(MACH_PORT_VALID(u.h.msgh_remote_port));
		NT_EQ(u.m.a, i);
		NT_KR(nt_send(u.h.msgh_remote_port, MACH_MSG_TYPE_MOVE_SEND_ONCE, MACH_PORT_NULL, 0,
		    u.h.msgh_id + 100, u.m.a * 3, u.m.b), MACH_MSG_SUCCESS);
		/* The send-once right went with the reply. */
		NT_EQ(nt_type(u.h.msgh_remote_port), 0);
	}
	/* The client's good-bye: it has all its replies, our node may go. */
	nt_expect(s, &u, 9999);
	nt_check_out("srv");
	NT_KR(mach_port_destroy(SELF, s), KERN_SUCCESS);
	finish();
}

static void
rpc_client(long arg)
{
	mach_port_t s, r = nt_port();
	nt_buf u;

	(void)arg;
	s = nt_look_up("srv");
	NT_EQ(nt_type(s), MACH_PORT_TYPE_SEND);
	NT_EQ(nt_stats().proxies, 1);
	for (uint32_t i = 0; i < RPC_N; i++) {
		NT_KR(nt_send(s, MACH_MSG_TYPE_COPY_SEND, r, MACH_MSG_TYPE_MAKE_SEND_ONCE,
		    1000 + (int)i, i, ~i), MACH_MSG_SUCCESS);
		nt_expect(r, &u, 1100 + (int)i);
		NT_EQ(u.h.msgh_seqno, i);
		NT_EQ(MACH_MSGH_BITS_LOCAL(u.h.msgh_bits), MACH_MSG_TYPE_PORT_SEND_ONCE);
		NT_EQ(u.h.msgh_remote_port, MACH_PORT_NULL);
		NT_EQ(u.h.msgh_local_port, r);
		NT_EQ(u.m.a, 3 * i);
		NT_EQ(u.m.b, ~i);
		/* The send-once right made for the request is used up. */
		NT_EQ(nt_status(r).mps_sorights, 0);
	}
	NT_EQ(nt_status(r).mps_msgcount, 0);
	/* Send rights and their user references are the client's own business. */
	NT_EQ(nt_refs(s, MACH_PORT_RIGHT_SEND), 1);
	NT_KR(nt_send(s, MACH_MSG_TYPE_MOVE_SEND, MACH_PORT_NULL, 0, 9999, 0, 0), MACH_MSG_SUCCESS);
	NT_EQ(nt_type(s), 0);
	NT_KR(mach_port_destroy(SELF, r), KERN_SUCCESS);
	finish();
}

static void
test_rpc_send_once_reply(void **state)
{
	struct nt_actor *srv, *cli;

	(void)state;
	srv = nt_spawn("server", rpc_server, 0);
	cli = nt_spawn("client", rpc_client, 0);
	nt_expect_ok(cli);
	nt_expect_ok(srv);
}

/* ---- every disposition of a right in a body --------------------------------------------- */

static void
disp_owner(long arg)
{
	mach_port_t a, q = nt_port_send(), n = nt_port(), so;
	nt_buf u;

	(void)arg;
	a = nt_look_up("holder");
	nt_request(q, MACH_NOTIFY_NO_SENDERS, 1, n);
	/* COPY_SEND, MAKE_SEND, MOVE_SEND: after them we hold no send right of our own. */
	NT_KR(nt_send_port(a, MACH_MSG_TYPE_COPY_SEND, q, MACH_MSG_TYPE_COPY_SEND, 1, 0),
	    MACH_MSG_SUCCESS);
	NT_EQ(nt_refs(q, MACH_PORT_RIGHT_SEND), 1);
	NT_KR(nt_send_port(a, MACH_MSG_TYPE_COPY_SEND, q, MACH_MSG_TYPE_MAKE_SEND, 2, 0),
	    MACH_MSG_SUCCESS);
	NT_EQ(nt_refs(q, MACH_PORT_RIGHT_SEND), 1);
	NT_KR(nt_send_port(a, MACH_MSG_TYPE_COPY_SEND, q, MACH_MSG_TYPE_MOVE_SEND, 3, 0),
	    MACH_MSG_SUCCESS);
	NT_EQ(nt_refs(q, MACH_PORT_RIGHT_SEND), 0);
	NT_EQ(nt_type(q), MACH_PORT_TYPE_RECEIVE);
	/* MAKE_SEND_ONCE and MOVE_SEND_ONCE. */
	NT_KR(nt_send_port(a, MACH_MSG_TYPE_COPY_SEND, q, MACH_MSG_TYPE_MAKE_SEND_ONCE, 4, 0),
	    MACH_MSG_SUCCESS);
	so = nt_send_once(q);
	NT_KR(nt_send_port(a, MACH_MSG_TYPE_COPY_SEND, so, MACH_MSG_TYPE_MOVE_SEND_ONCE, 5, 0),
	    MACH_MSG_SUCCESS);
	NT_EQ(nt_type(so), 0);
	NT_EQ(nt_status(q).mps_mscount, 2);

	/* The holder uses each right once, in order. */
	for (mach_msg_id_t id = 11; id <= 14; id++) {
		nt_expect(q, &u, id);
		NT_EQ(u.h.msgh_seqno, (unsigned)(id - 11));
		NT_EQ(MACH_MSGH_BITS_LOCAL(u.h.msgh_bits),
		    id == 12 || id == 13 ? MACH_MSG_TYPE_PORT_SEND_ONCE : MACH_MSG_TYPE_PORT_SEND);
	}
	NT_EQ(nt_status(q).mps_sorights, 0);
	/* Its last send right went: no-senders, with the make-send count. */
	nt_expect(n, &u, MACH_NOTIFY_NO_SENDERS);
	NT_EQ(u.ns.not_count, 2);
	NT_EQ(nt_status(q).mps_srights, 0);
	NT_KR(nt_send(a, MACH_MSG_TYPE_MOVE_SEND, MACH_PORT_NULL, 0, 99, 0, 0), MACH_MSG_SUCCESS);
	NT_KR(mach_port_destroy(SELF, q), KERN_SUCCESS);
	NT_KR(mach_port_destroy(SELF, n), KERN_SUCCESS);
	finish();
}

static void
disp_holder(long arg)
{
	mach_port_t a = nt_port(), sr = MACH_PORT_NULL, so1, so2;
	nt_buf u;

	(void)arg;
	nt_check_in("holder", a);
	for (mach_msg_id_t id = 1; id <= 3; id++) {
		nt_expect(a, &u, id);
		NT_EQ(u.pm.t.msgt_name, MACH_MSG_TYPE_PORT_SEND);
		/* One name per port in a space, whatever the disposition that brought it. */
		if (id == 1)
			sr = u.pm.port;
		NT_EQ(u.pm.port, sr);
		NT_EQ(nt_type(sr), MACH_PORT_TYPE_SEND);
		NT_EQ(nt_refs(sr, MACH_PORT_RIGHT_SEND), id);
	}
	/* All three rights came through one proxy. */
	NT_EQ(nt_stats().proxies, 1);
	nt_expect(a, &u, 4);
	NT_EQ(u.pm.t.msgt_name, MACH_MSG_TYPE_PORT_SEND_ONCE);
	so1 = u.pm.port;
	nt_expect(a, &u, 5);
	NT_EQ(u.pm.t.msgt_name, MACH_MSG_TYPE_PORT_SEND_ONCE);
	so2 = u.pm.port;
	NT_CHECK(so1 != so2 && so1 != sr && so2 != sr);
	NT_EQ(nt_type(so1), MACH_PORT_TYPE_SEND_ONCE);
	NT_EQ(nt_stats().proxies, 1);

	NT_KR(nt_send(sr, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, 11, 0, 0), MACH_MSG_SUCCESS);
	NT_KR(nt_send(so1, MACH_MSG_TYPE_MOVE_SEND_ONCE, MACH_PORT_NULL, 0, 12, 0, 0),
	    MACH_MSG_SUCCESS);
	NT_KR(nt_send(so2, MACH_MSG_TYPE_MOVE_SEND_ONCE, MACH_PORT_NULL, 0, 13, 0, 0),
	    MACH_MSG_SUCCESS);
	NT_KR(nt_send(sr, MACH_MSG_TYPE_MOVE_SEND, MACH_PORT_NULL, 0, 14, 0, 0), MACH_MSG_SUCCESS);
	NT_EQ(nt_refs(sr, MACH_PORT_RIGHT_SEND), 2);
	NT_KR(mach_port_mod_refs(SELF, sr, MACH_PORT_RIGHT_SEND, -2), KERN_SUCCESS);
	NT_EQ(nt_type(sr), 0);
	nt_expect(a, &u, 99);
	nt_check_out("holder");
	NT_KR(mach_port_destroy(SELF, a), KERN_SUCCESS);
	finish();
}

static void
test_body_dispositions(void **state)
{
	struct nt_actor *o, *h;

	(void)state;
	h = nt_spawn("holder", disp_holder, 0);
	o = nt_spawn("owner", disp_owner, 0);
	nt_expect_ok(o);
	nt_expect_ok(h);
}

/* Give the right `p` (make-send) to whoever sent the request u. */
static void
give_send(nt_buf *u, mach_port_t p)
{
	NT_KR(nt_send_port(u->h.msgh_remote_port, MACH_MSG_TYPE_MOVE_SEND_ONCE, p,
	    MACH_MSG_TYPE_MAKE_SEND, u->h.msgh_id + 100, 0), MACH_MSG_SUCCESS);
}

/* Ask `s` for a right (the request carries a send-once reply right). */
static mach_port_t
get_right(mach_port_t s, mach_msg_id_t id)
{
	mach_port_t r = nt_port(), p;
	nt_buf u;

	NT_KR(nt_send(s, MACH_MSG_TYPE_COPY_SEND, r, MACH_MSG_TYPE_MAKE_SEND_ONCE, id, 0, 0),
	    MACH_MSG_SUCCESS);
	nt_expect(r, &u, id + 100);
	NT_EQ(u.pm.t.msgt_name, MACH_MSG_TYPE_PORT_SEND);
	p = u.pm.port;
	NT_KR(mach_port_destroy(SELF, r), KERN_SUCCESS);
	return p;
}

/* ---- a send right passed to a third process ------------------------------------------------ */

/*
 * A gives B a send right to p (the only send rights of p are remote ones); B passes it
 * to C and drops its own; C uses it. No-senders must wait for C's release, which C makes
 * while alive (so it is the RELEASE accounting, not C's death, that says so).
 */
enum { TP_GET = 30, TP_PASS = 40, TP_USE = 33, TP_B_RELEASED = 50, TP_C_RELEASE = 60,
	TP_BYE = 70 };

static void
tp_a(long arg)
{
	mach_port_t s = nt_port(), p = nt_port(), n = nt_port(), c;
	nt_buf u;

	(void)arg;
	nt_check_in("a", s);
	nt_request(p, MACH_NOTIFY_NO_SENDERS, 1, n);
	nt_expect(s, &u, TP_GET);
	NT_KR(nt_send_port(u.h.msgh_remote_port, MACH_MSG_TYPE_MOVE_SEND_ONCE, p,
	    MACH_MSG_TYPE_MAKE_SEND, TP_GET + 100, 0), MACH_MSG_SUCCESS);
	nt_expect(p, &u, TP_USE);
	NT_EQ(u.m.a, 0xc);
	nt_expect(s, &u, TP_B_RELEASED);
	/* B gave its right back, C still holds one: no notification. */
	nt_expect_none(n, 300);
	NT_EQ(nt_status(p).mps_srights, 1);
	c = nt_look_up("c");
	NT_KR(nt_send(c, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, TP_C_RELEASE, 0, 0),
	    MACH_MSG_SUCCESS);
	nt_expect(n, &u, MACH_NOTIFY_NO_SENDERS);
	NT_EQ(u.ns.not_count, 1);
	NT_EQ(nt_status(p).mps_srights, 0);
	NT_KR(nt_send(c, MACH_MSG_TYPE_MOVE_SEND, MACH_PORT_NULL, 0, TP_BYE, 0, 0), MACH_MSG_SUCCESS);
	nt_check_out("a");
	NT_KR(mach_port_destroy(SELF, s), KERN_SUCCESS);
	NT_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
	NT_KR(mach_port_destroy(SELF, n), KERN_SUCCESS);
	finish();
}

static void
tp_b(long arg)
{
	mach_port_t s, p, c;

	(void)arg;
	s = nt_look_up("a");
	p = get_right(s, TP_GET);
	NT_EQ(nt_type(p), MACH_PORT_TYPE_SEND);
	c = nt_look_up("c");
	NT_EQ(nt_stats().proxies, 3);
	/* The third party gets it; we drop ours at once. */
	NT_KR(nt_send_port(c, MACH_MSG_TYPE_COPY_SEND, p, MACH_MSG_TYPE_COPY_SEND, TP_PASS, 0),
	    MACH_MSG_SUCCESS);
	NT_KR(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	NT_KR(nt_send(s, MACH_MSG_TYPE_MOVE_SEND, MACH_PORT_NULL, 0, TP_B_RELEASED, 0, 0),
	    MACH_MSG_SUCCESS);
	NT_KR(mach_port_deallocate(SELF, c), KERN_SUCCESS);
	finish();
}

/* C: a plain node that receives A's right from B. `arg` != 0: C is killed before it
 * releases (the orchestrator does it when told), see test_node_death.c. */
static void
tp_c(long arg)
{
	mach_port_t pc = nt_port(), p;
	nt_buf u;

	(void)arg;
	nt_check_in("c", pc);
	nt_expect(pc, &u, TP_PASS);
	NT_EQ(u.pm.t.msgt_name, MACH_MSG_TYPE_PORT_SEND);
	p = u.pm.port;
	NT_EQ(nt_type(p), MACH_PORT_TYPE_SEND);
	NT_KR(nt_send(p, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, TP_USE, 0xc, 0),
	    MACH_MSG_SUCCESS);
	nt_expect(pc, &u, TP_C_RELEASE);
	NT_KR(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	nt_expect(pc, &u, TP_BYE);
	nt_check_out("c");
	NT_KR(mach_port_destroy(SELF, pc), KERN_SUCCESS);
	finish();
}

static void
test_third_party_send_right(void **state)
{
	struct nt_actor *a, *b, *c;

	(void)state;
	a = nt_spawn("A", tp_a, 0);
	c = nt_spawn("C", tp_c, 0);
	b = nt_spawn("B", tp_b, 0);
	nt_expect_ok(b);
	nt_expect_ok(c);
	nt_expect_ok(a);
}

/* ---- send-once rights destroyed elsewhere ------------------------------------------------- */

static void
so_owner(long arg)
{
	mach_port_t h, q = nt_port();
	nt_buf u;

	(void)arg;
	h = nt_look_up("so-holder");
	NT_KR(nt_send_port(h, MACH_MSG_TYPE_COPY_SEND, q, MACH_MSG_TYPE_MAKE_SEND_ONCE, 1, 0),
	    MACH_MSG_SUCCESS);
	NT_KR(nt_send_port(h, MACH_MSG_TYPE_COPY_SEND, q, MACH_MSG_TYPE_MAKE_SEND_ONCE, 2, 0),
	    MACH_MSG_SUCCESS);
	/* The holder destroys the first: a send-once notification, on the port itself. */
	nt_expect(q, &u, MACH_NOTIFY_SEND_ONCE);
	NT_EQ(u.h.msgh_seqno, 0);
	NT_EQ(MACH_MSGH_BITS_LOCAL(u.h.msgh_bits), MACH_MSG_TYPE_PORT_SEND_ONCE);
	/* It uses the second. */
	nt_expect(q, &u, 22);
	NT_EQ(nt_status(q).mps_sorights, 0);
	NT_KR(nt_send(h, MACH_MSG_TYPE_MOVE_SEND, MACH_PORT_NULL, 0, 99, 0, 0), MACH_MSG_SUCCESS);
	NT_KR(mach_port_destroy(SELF, q), KERN_SUCCESS);
	finish();
}

static void
so_holder(long arg)
{
	mach_port_t a = nt_port(), s1, s2;
	nt_buf u;

	(void)arg;
	nt_check_in("so-holder", a);
	nt_expect(a, &u, 1);
	s1 = u.pm.port;
	nt_expect(a, &u, 2);
	s2 = u.pm.port;
	NT_EQ(nt_type(s1), MACH_PORT_TYPE_SEND_ONCE);
	NT_KR(mach_port_deallocate(SELF, s1), KERN_SUCCESS);
	NT_KR(nt_send(s2, MACH_MSG_TYPE_MOVE_SEND_ONCE, MACH_PORT_NULL, 0, 22, 0, 0),
	    MACH_MSG_SUCCESS);
	nt_expect(a, &u, 99);
	nt_check_out("so-holder");
	NT_KR(mach_port_destroy(SELF, a), KERN_SUCCESS);
	finish();
}

static void
test_send_once_destroyed_remotely(void **state)
{
	struct nt_actor *o, *h;

	(void)state;
	h = nt_spawn("holder", so_holder, 0);
	o = nt_spawn("owner", so_owner, 0);
	nt_expect_ok(o);
	nt_expect_ok(h);
}

/* ---- a port that dies: dead names elsewhere ---------------------------------------------- */

static void
dn_owner(long arg)
{
	mach_port_t h, p = nt_port(), bye = nt_port();
	nt_buf u;

	(void)arg;
	h = nt_look_up("dn-holder");
	NT_KR(nt_send_port(h, MACH_MSG_TYPE_COPY_SEND, p, MACH_MSG_TYPE_MAKE_SEND, 1, 0),
	    MACH_MSG_SUCCESS);
	NT_KR(nt_send_port(h, MACH_MSG_TYPE_COPY_SEND, bye, MACH_MSG_TYPE_MAKE_SEND, 2, 0),
	    MACH_MSG_SUCCESS);
	nt_expect(p, &u, 3);            /* the holder has its right and its request */
	NT_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
	nt_expect(bye, &u, 4);
	NT_EQ(nt_stats().frames_in, 3); /* look-up reply, 3, 4: nothing sent after the death */
	NT_KR(mach_port_destroy(SELF, bye), KERN_SUCCESS);
	NT_KR(mach_port_deallocate(SELF, h), KERN_SUCCESS);
	finish();
}

static void
dn_holder(long arg)
{
	mach_port_t a = nt_port(), n = nt_port(), p, bye;
	nt_buf u;
	mach_msg_return_t mr;

	(void)arg;
	nt_check_in("dn-holder", a);
	nt_expect(a, &u, 1);
	p = u.pm.port;
	nt_expect(a, &u, 2);
	bye = u.pm.port;
	nt_request(p, MACH_NOTIFY_DEAD_NAME, 0, n);
	NT_KR(nt_send(p, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, 3, 0, 0), MACH_MSG_SUCCESS);
	/* The port dies in its process: the name dies here, the request fires. */
	nt_expect(n, &u, MACH_NOTIFY_DEAD_NAME);
	NT_EQ(u.dn.not_port, p);
	NT_EQ(nt_type(p), MACH_PORT_TYPE_DEAD_NAME);
	/* One reference for the right, one for the notification. */
	NT_EQ(nt_refs(p, MACH_PORT_RIGHT_DEAD_NAME), 2);
	mr = nt_send(p, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, 5, 0, 0);
	NT_KR(mr, MACH_SEND_INVALID_DEST);
	NT_KR(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_DEAD_NAME, -2), KERN_SUCCESS);
	NT_KR(nt_send(bye, MACH_MSG_TYPE_MOVE_SEND, MACH_PORT_NULL, 0, 4, 0, 0), MACH_MSG_SUCCESS);
	nt_check_out("dn-holder");
	NT_KR(mach_port_destroy(SELF, a), KERN_SUCCESS);
	NT_KR(mach_port_destroy(SELF, n), KERN_SUCCESS);
	finish();
}

static void
test_dead_name_when_port_destroyed(void **state)
{
	struct nt_actor *o, *h;

	(void)state;
	h = nt_spawn("holder", dn_holder, 0);
	o = nt_spawn("owner", dn_owner, 0);
	nt_expect_ok(h);
	nt_expect_ok(o);
}

/* ---- a receive right moves to another process, and back ---------------------------------- */

/*
 * A owns p; B and C hold send rights to it (from A). With five messages queued on p
 * (three from B, two from A), A moves p's receive right to B. B must receive the five in
 * order with sequence numbers 0..4, then messages from its own old right, from C's and
 * from A's (all through A's forwarder). B then moves it back to A with two messages
 * queued; the chain of forwarders still delivers C's and A's messages. Finally every
 * right goes and the no-senders request A made on the returned port fires: the
 * forwarders' credits all came back.
 */
enum { MV_GET = 1, MV_SENT = 2, MV_MOVE = 3, MV_BACK = 4, MV_CDONE = 5, MV_BYE = 6 };
enum { ORD_C_SEND = 1, ORD_C_SEND2, ORD_C_DROP, ORD_EXIT };

/* Receive `n` messages on p whose ids are the set ids[] (any order), seqnos from seq0. */
static void
expect_set(mach_port_t p, const mach_msg_id_t *ids, unsigned n, mach_port_seqno_t seq0)
{
	bool seen[8] = { false };
	nt_buf u;

	for (unsigned i = 0; i < n; i++) {
		unsigned j;

		NT_KR(nt_recv(p, &u, NT_TMO), MACH_MSG_SUCCESS);
		NT_EQ(u.h.msgh_seqno, seq0 + i);
		for (j = 0; j < n; j++)
			if (ids[j] == u.h.msgh_id && !seen[j])
				break;
		if (j == n)
			nt_fail(__FILE__, __LINE__, "unexpected message %d", u.h.msgh_id);
		seen[j] = true;
	}
}

static void
mv_a(long arg)
{
	mach_port_t s = nt_port(), p = nt_port(), b, z, n = nt_port();
	nt_buf u;

	(void)arg;
	nt_check_in("mv-a", s);
	/* B's and C's requests for a right, and B's word that it sent three messages to p
	 * (they are queued before it comes: same connection). */
	for (int gets = 0, sent = 0; gets < 2 || !sent;) {
		NT_KR(nt_recv(s, &u, NT_TMO), MACH_MSG_SUCCESS);
		if (u.h.msgh_id == MV_GET) {
			give_send(&u, p);
			gets++;
		} else {
			NT_EQ(u.h.msgh_id, MV_SENT);
			sent = 1;
		}
	}
	NT_EQ(nt_status(p).mps_msgcount, 3);
	NT_KR(nt_send(p, MACH_MSG_TYPE_MAKE_SEND, MACH_PORT_NULL, 0, 14, 0, 0), MACH_MSG_SUCCESS);
	NT_KR(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	NT_KR(nt_send(p, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, 15, 0, 0), MACH_MSG_SUCCESS);
	NT_EQ(nt_status(p).mps_msgcount, 5);
	nt_tell(0);
	b = nt_look_up("mv-b");
	NT_KR(nt_send_port(b, MACH_MSG_TYPE_COPY_SEND, p, MACH_MSG_TYPE_MOVE_RECEIVE, MV_MOVE, 0),
	    MACH_MSG_SUCCESS);
	/* Our name p keeps the send right; the port is now B's, reached through us. */
	NT_EQ(nt_type(p), MACH_PORT_TYPE_SEND);
	NT_KR(nt_send(p, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, 18, 0, 0), MACH_MSG_SUCCESS);

	/* It comes back, with two messages queued by B. */
	nt_expect(s, &u, MV_BACK);
	NT_EQ(u.pm.t.msgt_name, MACH_MSG_TYPE_PORT_RECEIVE);
	z = u.pm.port;
	NT_EQ(nt_type(z), MACH_PORT_TYPE_RECEIVE);
	nt_expect(z, &u, 20);
	NT_EQ(u.h.msgh_seqno, 0);
	nt_expect(z, &u, 21);
	NT_EQ(u.h.msgh_seqno, 1);
	/* Through the forwarders: ours to B's, B's back to us. */
	NT_KR(nt_send(p, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, 22, 0, 0), MACH_MSG_SUCCESS);
	nt_expect(z, &u, 22);
	NT_EQ(u.h.msgh_seqno, 2);
	nt_tell(1);                     /* C sends through its old right */
	nt_expect(z, &u, 23);
	NT_EQ(u.h.msgh_seqno, 3);
	/* Only forwarded rights are left: when they go, the port has no senders. */
	nt_request(z, MACH_NOTIFY_NO_SENDERS, 0, n);
	NT_KR(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	nt_expect_none(n, 200);         /* C still holds one */
	nt_tell(2);                     /* C drops it */
	nt_expect(n, &u, MACH_NOTIFY_NO_SENDERS);
	NT_EQ(nt_status(z).mps_srights, 0);
	NT_EQ(nt_status(z).mps_msgcount, 0);
	NT_KR(nt_send(b, MACH_MSG_TYPE_MOVE_SEND, MACH_PORT_NULL, 0, MV_BYE, 0, 0), MACH_MSG_SUCCESS);
	nt_check_out("mv-a");
	NT_KR(mach_port_destroy(SELF, s), KERN_SUCCESS);
	NT_KR(mach_port_destroy(SELF, z), KERN_SUCCESS);
	NT_KR(mach_port_destroy(SELF, n), KERN_SUCCESS);
	finish();
}

static void
mv_b(long arg)
{
	mach_port_t bp = nt_port(), s, x, y;
	const mach_msg_id_t later[] = { 16, 17, 18 };
	nt_buf u;

	(void)arg;
	nt_check_in("mv-b", bp);
	s = nt_look_up("mv-a");
	x = get_right(s, MV_GET);
	for (mach_msg_id_t id = 11; id <= 13; id++)
		NT_KR(nt_send(x, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, id, 0, 0), MACH_MSG_SUCCESS);
	NT_KR(nt_send(s, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, MV_SENT, 0, 0),
	    MACH_MSG_SUCCESS);
	nt_expect(bp, &u, MV_MOVE);
	NT_EQ(u.pm.t.msgt_name, MACH_MSG_TYPE_PORT_RECEIVE);
	y = u.pm.port;
	NT_EQ(nt_type(y) & MACH_PORT_TYPE_RECEIVE, MACH_PORT_TYPE_RECEIVE);
	/* What was queued came with it, in order, numbered from 0 by its new owner. */
	for (mach_msg_id_t id = 11; id <= 15; id++) {
		nt_expect(y, &u, id);
		NT_EQ(u.h.msgh_seqno, (unsigned)(id - 11));
		NT_EQ(u.h.msgh_local_port, y);
	}
	/* Old senders still reach it: our own right (through A), C's, A's. */
	NT_KR(nt_send(x, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, 16, 0, 0), MACH_MSG_SUCCESS);
	nt_tell(x == y);               /* reported: one name per port is not kept here */
	nt_await();                     /* C has sent 17 */
	expect_set(y, later, 3, 5);
	NT_EQ(nt_status(y).mps_seqno, 8);

	/* Back to A, with two messages queued. */
	NT_KR(nt_send(y, MACH_MSG_TYPE_MAKE_SEND, MACH_PORT_NULL, 0, 20, 0, 0), MACH_MSG_SUCCESS);
	NT_KR(nt_send(y, MACH_MSG_TYPE_MAKE_SEND, MACH_PORT_NULL, 0, 21, 0, 0), MACH_MSG_SUCCESS);
	NT_KR(nt_send_port(s, MACH_MSG_TYPE_COPY_SEND, y, MACH_MSG_TYPE_MOVE_RECEIVE, MV_BACK, 0),
	    MACH_MSG_SUCCESS);
	if (x != y)
		NT_EQ(nt_type(y), 0);
	NT_KR(mach_port_deallocate(SELF, x), KERN_SUCCESS);
	NT_KR(mach_port_deallocate(SELF, s), KERN_SUCCESS);
	nt_expect(bp, &u, MV_BYE);
	nt_check_out("mv-b");
	NT_KR(mach_port_destroy(SELF, bp), KERN_SUCCESS);
	finish();
}

static void
mv_c(long arg)
{
	mach_port_t s, p;

	(void)arg;
	s = nt_look_up("mv-a");
	p = get_right(s, MV_GET);
	NT_KR(mach_port_deallocate(SELF, s), KERN_SUCCESS);
	NT_EQ(nt_await(), ORD_C_SEND);
	NT_KR(nt_send(p, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, 17, 0, 0), MACH_MSG_SUCCESS);
	nt_tell(0);
	NT_EQ(nt_await(), ORD_C_SEND2);
	NT_KR(nt_send(p, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, 23, 0, 0), MACH_MSG_SUCCESS);
	NT_EQ(nt_await(), ORD_C_DROP);
	NT_KR(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	NT_EQ(nt_await(), ORD_EXIT);
	finish();
}

static void
test_move_receive(void **state)
{
	struct nt_actor *a, *b, *c;
	uint64_t same;

	(void)state;
	a = nt_spawn("A", mv_a, 0);
	b = nt_spawn("B", mv_b, 0);
	c = nt_spawn("C", mv_c, 0);
	nt_hear(a);                     /* five messages queued on p */
	same = nt_hear(b);              /* B got p and its queue */
	/* B held a send right (a proxy): the receive right arrives under that name. */
	assert_int_equal(same, 1);
	nt_order(c, ORD_C_SEND);
	nt_hear(c);
	nt_order(b, 0);
	assert_int_equal(nt_hear(a), 1);
	nt_order(c, ORD_C_SEND2);
	assert_int_equal(nt_hear(a), 2);
	nt_order(c, ORD_C_DROP);
	nt_expect_ok(a);
	nt_expect_ok(b);
	nt_order(c, ORD_EXIT);
	nt_expect_ok(c);
}

/*
 * The notification requests of a receive right travel with it: A asks for no-senders and
 * port-destroyed on p, then moves p to B. When C (A's only sender) drops its right, the
 * no-senders notification comes to A's port; when B destroys p, the receive right comes
 * back to A in a port-destroyed notification.
 */
static void
rq_a(long arg)
{
	mach_port_t p = nt_port(), n = nt_port(), pd = nt_port(), b, c, w;
	nt_buf u;

	(void)arg;
	c = nt_look_up("rq-c");
	b = nt_look_up("rq-b");
	NT_KR(nt_send_port(c, MACH_MSG_TYPE_COPY_SEND, p, MACH_MSG_TYPE_MAKE_SEND, 1, 0),
	    MACH_MSG_SUCCESS);
	nt_request(p, MACH_NOTIFY_NO_SENDERS, 1, n);
	nt_request(p, MACH_NOTIFY_PORT_DESTROYED, 0, pd);
	NT_KR(nt_send_port(b, MACH_MSG_TYPE_COPY_SEND, p, MACH_MSG_TYPE_MOVE_RECEIVE, 2, 0),
	    MACH_MSG_SUCCESS);
	NT_EQ(nt_type(p), 0);
	nt_tell(0);
	nt_expect(n, &u, MACH_NOTIFY_NO_SENDERS);
	nt_tell(1);
	nt_expect(pd, &u, MACH_NOTIFY_PORT_DESTROYED);
	NT_EQ(((mach_port_destroyed_notification_t *)&u)->not_type.msgt_name,
	    MACH_MSG_TYPE_PORT_RECEIVE);
	w = ((mach_port_destroyed_notification_t *)&u)->not_port;
	NT_EQ(nt_type(w), MACH_PORT_TYPE_RECEIVE);
	/* Ours again, and nobody else's: no request is left on it. */
	NT_EQ(nt_status(w).mps_nsrequest, 0);
	NT_EQ(nt_status(w).mps_pdrequest, 0);
	/* The forwarder B's old port became gives its credit back just after the
	 * notification (a RELEASE behind it): then nobody holds a send right. */
	for (uint64_t end = nt_now_ms() + NT_TMO; nt_status(w).mps_srights;) {
		NT_CHECK(nt_now_ms() < end);
		nt_sleep_ms(2);
	}
	NT_KR(mach_port_destroy(SELF, w), KERN_SUCCESS);
	NT_KR(nt_send(b, MACH_MSG_TYPE_MOVE_SEND, MACH_PORT_NULL, 0, 3, 0, 0), MACH_MSG_SUCCESS);
	NT_KR(nt_send(c, MACH_MSG_TYPE_MOVE_SEND, MACH_PORT_NULL, 0, 3, 0, 0), MACH_MSG_SUCCESS);
	NT_KR(mach_port_destroy(SELF, n), KERN_SUCCESS);
	NT_KR(mach_port_destroy(SELF, pd), KERN_SUCCESS);
	finish();
}

static void
rq_b(long arg)
{
	mach_port_t bp = nt_port(), y;
	nt_buf u;

	(void)arg;
	nt_check_in("rq-b", bp);
	nt_expect(bp, &u, 2);
	y = u.pm.port;
	NT_EQ(nt_type(y), MACH_PORT_TYPE_RECEIVE);
	NT_EQ(nt_status(y).mps_nsrequest, 1);
	NT_EQ(nt_status(y).mps_pdrequest, 1);
	nt_tell(0);
	nt_await();
	NT_KR(mach_port_destroy(SELF, y), KERN_SUCCESS);
	nt_expect(bp, &u, 3);
	nt_check_out("rq-b");
	NT_KR(mach_port_destroy(SELF, bp), KERN_SUCCESS);
	finish();
}

static void
rq_c(long arg)
{
	mach_port_t cp = nt_port(), p;
	nt_buf u;

	(void)arg;
	nt_check_in("rq-c", cp);
	nt_expect(cp, &u, 1);
	p = u.pm.port;
	NT_EQ(nt_type(p), MACH_PORT_TYPE_SEND);
	nt_tell(0);
	nt_await();
	NT_KR(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	nt_expect(cp, &u, 3);
	nt_check_out("rq-c");
	NT_KR(mach_port_destroy(SELF, cp), KERN_SUCCESS);
	finish();
}

static void
test_move_receive_keeps_requests(void **state)
{
	struct nt_actor *a, *b, *c;

	(void)state;
	b = nt_spawn("B", rq_b, 0);
	c = nt_spawn("C", rq_c, 0);
	a = nt_spawn("A", rq_a, 0);
	nt_hear(c);
	nt_hear(a);
	nt_hear(b);
	nt_order(c, 0);                 /* C drops the last send right */
	assert_int_equal(nt_hear(a), 1);
	nt_order(b, 0);                 /* B destroys the receive right */
	nt_expect_ok(a);
	nt_expect_ok(b);
	nt_expect_ok(c);
}

/* ---- out-of-line data and port arrays ----------------------------------------------------- */

#define OOL_SMALL 100
#define OOL_SMALL_OFF 37
#define OOL_BIG (6u << 20)
#define OOL_BIG_OFF 1234
#define INLINE_BIG 60000          /* more than one socket frame holds: a sealed memfd */

struct ool_msg {
	mach_msg_header_t h;
	mach_msg_type_long_t t_small;
	vm_offset_t small;
	mach_msg_type_long_t t_page;
	vm_offset_t page;
	mach_msg_type_long_t t_big;
	vm_offset_t big;
	mach_msg_type_t t_ports;
	vm_offset_t ports;
};

struct inline_msg {
	mach_msg_header_t h;
	mach_msg_type_long_t t;
	uint8_t data[INLINE_BIG];
};

static void
set_ool(mach_msg_type_long_t *t, size_t len, bool dealloc)
{
	memset(t, 0, sizeof(*t));
	t->msgtl_header.msgt_longform = 1;
	t->msgtl_header.msgt_inline = 0;
	t->msgtl_header.msgt_deallocate = dealloc;
	t->msgtl_name = MACH_MSG_TYPE_BYTE;
	t->msgtl_size = 8;
	t->msgtl_number = (natural_t)len;
}

static void
fill(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 7 + seed + (i >> 12));
}

static bool
check_fill(const uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != (uint8_t)(i * 7 + seed + (i >> 12)))
			return false;
	return true;
}

/* The mapping that holds addr, as /proc/self/maps names it ("" if anonymous). */
static void
mapping_name(uintptr_t addr, char *name, size_t len)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];

	name[0] = '\0';
	NT_CHECK(f != NULL);
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long lo, hi;
		int pos = 0;

		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &pos) < 2)
			continue;
		if (addr >= lo && addr < hi) {
			snprintf(name, len, "%s", line + pos);
			name[strcspn(name, "\n")] = '\0';
			break;
		}
	}
	fclose(f);
}

static void
ool_receiver(long arg)
{
	mach_port_t a = nt_port();
	size_t ps = vm_page_size;
	union {
		mach_msg_header_t h;
		struct ool_msg o;
		struct inline_msg i;
	} *u = malloc(sizeof(*u));
	mach_port_t *ports;
	char name[256];

	(void)arg;
	NT_CHECK(u != NULL);
	nt_check_in("ool", a);
	memset(u, 0, sizeof(*u));
	NT_KR(mach_msg(&u->h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(*u), a, NT_TMO,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
	NT_EQ(u->h.msgh_id, 1);
	/* Small: copied, at the sender's page offset. */
	NT_EQ(u->o.t_small.msgtl_number, OOL_SMALL);
	NT_EQ(u->o.small & (ps - 1), OOL_SMALL_OFF);
	NT_CHECK(check_fill((uint8_t *)u->o.small, OOL_SMALL, 1));
	NT_EQ(u->o.t_page.msgtl_number, ps);
	NT_EQ(u->o.page & (ps - 1), 0);
	NT_CHECK(check_fill((uint8_t *)u->o.page, ps, 2));
	/* Big: its pages are those the sender wrote into a sealed memfd, mapped here
	 * copy-on-write, not copied again. */
	NT_EQ(u->o.t_big.msgtl_number, OOL_BIG);
	NT_EQ(u->o.big & (ps - 1), OOL_BIG_OFF);
	NT_CHECK(check_fill((uint8_t *)u->o.big, OOL_BIG, 3));
	mapping_name(u->o.big, name, sizeof(name));
	if (strstr(name, "memfd:machvm-wire") == NULL)
		nt_fail(__FILE__, __LINE__, "big region mapped from \"%s\"", name);
	/* Ours to write (privately) and to free. */
	memset((void *)u->o.big, 0x5a, OOL_BIG);
	NT_KR(vm_deallocate(SELF, u->o.small, OOL_SMALL), KERN_SUCCESS);
	NT_KR(vm_deallocate(SELF, u->o.page, ps), KERN_SUCCESS);
	NT_KR(vm_deallocate(SELF, u->o.big, OOL_BIG), KERN_SUCCESS);
	/* Three send rights in an out-of-line array: usable, then dropped. */
	NT_EQ(u->o.t_ports.msgt_name, MACH_MSG_TYPE_PORT_SEND);
	NT_EQ(u->o.t_ports.msgt_number, 3);
	NT_EQ(u->o.t_ports.msgt_inline, 0);
	ports = (mach_port_t *)u->o.ports;
	NT_CHECK(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
	NT_EQ(nt_stats().proxies, 3);
	for (int i = 0; i < 3; i++) {
		NT_EQ(nt_type(ports[i]), MACH_PORT_TYPE_SEND);
		NT_KR(nt_send(ports[i], MACH_MSG_TYPE_MOVE_SEND, MACH_PORT_NULL, 0, 201 + i, 0, 0),
		    MACH_MSG_SUCCESS);
	}
	NT_KR(vm_deallocate(SELF, u->o.ports, 3 * sizeof(mach_port_t)), KERN_SUCCESS);

	/* A message larger than a socket frame. */
	memset(u, 0, sizeof(*u));
	NT_KR(mach_msg(&u->h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(*u), a, NT_TMO,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
	NT_EQ(u->h.msgh_id, 2);
	NT_EQ(u->h.msgh_size, sizeof(struct inline_msg));
	NT_EQ(u->i.t.msgtl_number, INLINE_BIG);
	NT_CHECK(check_fill(u->i.data, INLINE_BIG, 4));
	/* The good-bye. */
	NT_KR(mach_msg(&u->h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(*u), a, NT_TMO,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
	NT_EQ(u->h.msgh_id, 99);
	free(u);
	nt_check_out("ool");
	NT_KR(mach_port_destroy(SELF, a), KERN_SUCCESS);
	finish();
}

static void
ool_sender(long arg)
{
	size_t ps = vm_page_size;
	mach_port_t a, q[3], n = nt_port();
	vm_address_t small = 0, page = 0, big = 0, parr = 0;
	struct ool_msg m;
	struct inline_msg *im = malloc(sizeof(*im));
	nt_buf u;

	(void)arg;
	NT_CHECK(im != NULL);
	a = nt_look_up("ool");
	NT_KR(vm_allocate(SELF, &small, ps, TRUE), KERN_SUCCESS);
	NT_KR(vm_allocate(SELF, &page, ps, TRUE), KERN_SUCCESS);
	NT_KR(vm_allocate(SELF, &big, OOL_BIG + 2 * ps, TRUE), KERN_SUCCESS);
	NT_KR(vm_allocate(SELF, &parr, ps, TRUE), KERN_SUCCESS);
	fill((uint8_t *)small + OOL_SMALL_OFF, OOL_SMALL, 1);
	fill((uint8_t *)page, ps, 2);
	fill((uint8_t *)big + OOL_BIG_OFF, OOL_BIG, 3);
	for (int i = 0; i < 3; i++) {
		q[i] = nt_port();
		nt_request(q[i], MACH_NOTIFY_NO_SENDERS, 1, n);
		((mach_port_t *)parr)[i] = q[i];
	}
	memset(&m, 0, sizeof(m));
	m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX;
	m.h.msgh_size = sizeof(m);
	m.h.msgh_remote_port = a;
	m.h.msgh_id = 1;
	set_ool(&m.t_small, OOL_SMALL, false);
	m.small = small + OOL_SMALL_OFF;
	set_ool(&m.t_page, ps, true);
	m.page = page;
	set_ool(&m.t_big, OOL_BIG, false);
	m.big = big + OOL_BIG_OFF;
	m.t_ports.msgt_name = MACH_MSG_TYPE_MAKE_SEND;
	m.t_ports.msgt_size = 32;
	m.t_ports.msgt_number = 3;
	m.t_ports.msgt_inline = 0;
	m.ports = parr;
	NT_KR(mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(m), 0, MACH_PORT_NULL,
	    NT_TMO, MACH_PORT_NULL), MACH_MSG_SUCCESS);
	/* Copy semantics: what we write now was not sent. */
	memset((uint8_t *)big + OOL_BIG_OFF, 0, OOL_BIG);
	NT_KR(vm_deallocate(SELF, big, OOL_BIG + 2 * ps), KERN_SUCCESS);
	NT_KR(vm_deallocate(SELF, small, ps), KERN_SUCCESS);
	NT_KR(vm_deallocate(SELF, parr, ps), KERN_SUCCESS);

	memset(im, 0, sizeof(*im));
	im->h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0);
	im->h.msgh_size = sizeof(*im);
	im->h.msgh_remote_port = a;
	im->h.msgh_id = 2;
	im->t.msgtl_header.msgt_longform = 1;
	im->t.msgtl_header.msgt_inline = 1;
	im->t.msgtl_name = MACH_MSG_TYPE_BYTE;
	im->t.msgtl_size = 8;
	im->t.msgtl_number = INLINE_BIG;
	fill(im->data, INLINE_BIG, 4);
	NT_KR(mach_msg(&im->h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(*im), 0, MACH_PORT_NULL,
	    NT_TMO, MACH_PORT_NULL), MACH_MSG_SUCCESS);
	free(im);

	/* The receiver used each right of the array and dropped it. */
	for (int i = 0; i < 3; i++)
		nt_expect(q[i], &u, 201 + i);
	for (int i = 0; i < 3; i++) {
		nt_expect(n, &u, MACH_NOTIFY_NO_SENDERS);
		NT_EQ(u.ns.not_count, 1);
	}
	NT_KR(nt_send(a, MACH_MSG_TYPE_MOVE_SEND, MACH_PORT_NULL, 0, 99, 0, 0), MACH_MSG_SUCCESS);
	for (int i = 0; i < 3; i++)
		NT_KR(mach_port_destroy(SELF, q[i]), KERN_SUCCESS);
	NT_KR(mach_port_destroy(SELF, n), KERN_SUCCESS);
	finish();
}

static void
test_ool(void **state)
{
	struct nt_actor *r, *s;

	(void)state;
	r = nt_spawn("receiver", ool_receiver, 0);
	s = nt_spawn("sender", ool_sender, 0);
	nt_expect_ok(s);
	nt_expect_ok(r);
}

/* ---- order per sender, sequence numbers, many senders ------------------------------------- */

#define ORDER_SENDERS 3
#define ORDER_N 3000

static void
order_receiver(long arg)
{
	mach_port_t a = nt_port();
	uint32_t next[ORDER_SENDERS] = { 0 };
	nt_buf u;

	(void)arg;
	nt_check_in("order", a);
	for (uint32_t i = 0; i < ORDER_SENDERS * ORDER_N; i++) {
		NT_KR(nt_recv(a, &u, NT_TMO), MACH_MSG_SUCCESS);
		NT_EQ(u.h.msgh_seqno, i);
		NT_CHECK(u.h.msgh_id >= 0 && u.h.msgh_id < ORDER_SENDERS);
		NT_EQ(u.m.a, next[u.h.msgh_id]);
		NT_EQ(u.m.b, u.m.a * 2654435761u);
		next[u.h.msgh_id]++;
	}
	nt_expect_none(a, 50);
	nt_tell(0);
	nt_await();
	nt_check_out("order");
	NT_KR(mach_port_destroy(SELF, a), KERN_SUCCESS);
	finish();
}

static void
order_sender(long id)
{
	mach_port_t a = nt_look_up("order");

	for (uint32_t i = 0; i < ORDER_N; i++)
		NT_KR(nt_send(a, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, (mach_msg_id_t)id, i,
		    i * 2654435761u), MACH_MSG_SUCCESS);
	/* Stay until the receiver has everything: our node writes what the socket could
	 * not take yet. */
	nt_await();
	NT_KR(mach_port_deallocate(SELF, a), KERN_SUCCESS);
	finish();
}

static void
test_order_many_senders(void **state)
{
	struct nt_actor *r, *s[ORDER_SENDERS];

	(void)state;
	r = nt_spawn("receiver", order_receiver, 0);
	for (long i = 0; i < ORDER_SENDERS; i++)
		s[i] = nt_spawn("sender", order_sender, i);
	nt_hear(r);
	for (int i = 0; i < ORDER_SENDERS; i++) {
		nt_order(s[i], 0);
		nt_expect_ok(s[i]);
	}
	nt_order(r, 0);
	nt_expect_ok(r);
}

int
main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rpc_send_once_reply, nt_setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_body_dispositions, nt_setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_third_party_send_right, nt_setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_send_once_destroyed_remotely, nt_setup,
		    nt_teardown),
		cmocka_unit_test_setup_teardown(test_dead_name_when_port_destroyed, nt_setup,
		    nt_teardown),
		cmocka_unit_test_setup_teardown(test_move_receive, nt_setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_move_receive_keeps_requests, nt_setup,
		    nt_teardown),
		cmocka_unit_test_setup_teardown(test_ool, nt_setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_order_many_senders, nt_setup, nt_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
