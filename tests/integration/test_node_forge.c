/*
 * tests/integration/test_node_forge.c: a process that speaks the node protocol by hand
 * (the cmocka process itself, which never starts a node of its own) against a real node
 * (an actor): references it forges are never live rights, and connections that lie
 * about who they are, or for whom they are, are refused (issue 6).
 *
 * - A message to a random token is never delivered; the sender is told the token is
 *   dead. So is a message to the token of a port that has died (a stale reference).
 * - Rights in a message that name a random token, the receiving node itself, or a node
 *   that does not exist arrive as dead names, never as live rights.
 * - A HELLO that asks for another incarnation of the node (a process that restarted
 *   under the same pid is never taken for the old one), that claims a pid other than
 *   SO_PEERCRED's, that has the wrong version, or a frame before any HELLO: the
 *   connection is closed and nothing sent on it is delivered. A malformed frame ends
 *   the connection and that incarnation of the sender for good.
 * The positive controls (a well-formed frame to the real token is delivered) show that
 * the frames built here are the ones the node accepts.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include "mvm_node_test.h"
#include "ipc/node.h"

/* ---- the real node ------------------------------------------------------------------------ */

enum { V_EXPECT_MSG = 1, V_EXPECT_NONE, V_DESTROY, V_STATS, V_EXIT };

/* What a received message's body right turned out to be. */
enum { BODY_NONE = 0, BODY_DEAD = 1 };

static void
victim(long arg)
{
	mach_port_t p = nt_port();
	uint8_t tok[16];
	uint64_t t0, t1;
	struct mvm_node_stats st;
	nt_buf u;

	(void)arg;
	NT_KR(mvm_node_start(), KERN_SUCCESS);
	/* The token other nodes would name p by, as if a right to it had left. */
	NT_KR(mvm__node_export_name(p, tok), KERN_SUCCESS);
	memcpy(&t0, tok, 8);
	memcpy(&t1, tok + 8, 8);
	nt_tell(nt_stats().incarnation);
	nt_tell(t0);
	nt_tell(t1);
	for (;;) {
		switch (nt_await()) {
		case V_EXPECT_MSG:
			nt_expect(p, &u, (mach_msg_id_t)nt_await());
			if (u.h.msgh_bits & MACH_MSGH_BITS_COMPLEX) {
				mach_port_t r = u.pm.port;

				/* A forged right is dead at once, or (a node that does not exist)
				 * becomes so when its node cannot be reached. Never live. */
				if (MACH_PORT_VALID(r)) {
					NT_WAIT_DEAD(r);
					NT_KR(mach_port_deallocate(SELF, r), KERN_SUCCESS);
				} else {
					NT_EQ(r, MACH_PORT_DEAD);
				}
				nt_tell(BODY_DEAD);
			} else {
				nt_tell(BODY_NONE);
			}
			break;
		case V_EXPECT_NONE:
			nt_expect_none(p, 300);
			nt_tell(nt_stats().frames_in);
			break;
		case V_DESTROY:
			NT_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
			p = nt_port();
			nt_tell(0);
			break;
		case V_STATS:
			st = nt_stats();
			nt_tell(st.peers);
			nt_tell(st.peers_dead);
			nt_tell(st.frames_in);
			break;
		case V_EXIT:
			NT_KR(mach_port_destroy(SELF, p), KERN_SUCCESS);
			NT_SETTLE(0, 0);
			NT_QUIESCENT();
			return;
		default:
			nt_fail(__FILE__, __LINE__, "bad order");
		}
	}
}

/* ---- the hand-made node ------------------------------------------------------------------ */

static struct {
	struct nt_actor *v;
	uint32_t vpid;
	uint64_t vinc;
	uint8_t vtok[16];
	int lfd;                      /* our listening socket, for the victim's connections */
	uint32_t pid;
} R;

static void
sun_of(struct sockaddr_un *sa, uint32_t pid)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/p.%u", nt_dir, pid);
}

static void
hdr(struct mvm_whdr *h, int type, size_t len)
{
	memset(h, 0, sizeof(*h));
	h->magic = MVM_WIRE_MAGIC;
	h->type = (uint16_t)type;
	h->len = (uint32_t)len;
}

static void
send_frame(int fd, const void *buf, size_t len)
{
	/* The victim may already have closed: that is what some tests look for. */
	(void)send(fd, buf, len, MSG_NOSIGNAL);
}

static void
send_hello(int fd, uint32_t pid, uint64_t inc, uint64_t want_inc, uint32_t version)
{
	struct mvm_whello h;

	memset(&h, 0, sizeof(h));
	hdr(&h.h, MVM_WF_HELLO, sizeof(h));
	h.version = version;
	h.pid = pid;
	h.inc = inc;
	h.want_inc = want_inc;
	send_frame(fd, &h, sizeof(h));
}

/* One frame from fd within ms: its length, 0 at the end of the connection, -1 if none. */
static ssize_t
recv_frame(int fd, void *buf, size_t len, int ms)
{
	struct pollfd pfd = { fd, POLLIN, 0 };
	ssize_t n;

	if (poll(&pfd, 1, ms) <= 0)
		return -1;
	n = recv(fd, buf, len, MSG_DONTWAIT);
	if (n < 0 && errno == ECONNRESET)
		return 0;
	return n;
}

/* A connection to the victim whose HELLO says (pid, inc) and asks for want_inc. */
static int
connect_victim(uint32_t pid, uint64_t inc, uint64_t want_inc, uint32_t version)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sun_of(&sa, R.vpid);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	if (version != 0)
		send_hello(fd, pid, inc, want_inc, version);
	return fd;
}

/* The victim closes fd without a word (a refused connection). */
static void
assert_refused(int fd)
{
	uint8_t buf[256];

	assert_int_equal(recv_frame(fd, buf, sizeof(buf), 5000), 0);
}

/*
 * A full connection as incarnation `inc` of our pid: our HELLO, the victim's answer, and
 * the victim's connection back to us (its HELLO answered). *back gets that connection.
 */
static int
connect_as(uint64_t inc, int *back)
{
	int fd = connect_victim(R.pid, inc, R.vinc, MVM_WIRE_VERSION);
	struct mvm_whello h;
	struct pollfd pfd = { R.lfd, POLLIN, 0 };

	assert_int_equal(recv_frame(fd, &h, sizeof(h), 5000), sizeof(h));
	assert_int_equal(h.h.type, MVM_WF_HELLO);
	assert_int_equal(h.pid, R.vpid);
	assert_true(h.inc == R.vinc);
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	*back = accept4(R.lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(*back >= 0);
	assert_int_equal(recv_frame(*back, &h, sizeof(h), 5000), sizeof(h));
	assert_int_equal(h.h.type, MVM_WF_HELLO);
	assert_int_equal(h.pid, R.vpid);
	assert_true(h.want_inc == inc);
	send_hello(*back, R.pid, inc, 0, MVM_WIRE_VERSION);
	return fd;
}

/* A message frame to token `dest` with id; with a body right `body` if not NULL. The
 * frame: header, the references (none or one), the message. */
static void
send_msg(int fd, const uint8_t dest[16], mach_msg_id_t id, const struct mvm_wref *body)
{
	_Alignas(8) uint8_t buf[512];
	struct mvm_wmsg wm;
	struct nt_pmsg pm;
	struct nt_msg m;
	size_t len = sizeof(wm);

	memset(&wm, 0, sizeof(wm));
	wm.dest.kind = MVM_WR_YOURS;
	wm.dest.type = MACH_MSG_TYPE_PORT_SEND;
	memcpy(wm.dest.token, dest, 16);
	wm.reply.kind = MVM_WR_NULL;
	if (body != NULL) {
		wm.nports = 1;
		memcpy(buf + len, body, sizeof(*body));
		len += sizeof(*body);
		memset(&pm, 0, sizeof(pm));
		pm.h.msgh_bits = MACH_MSGH_BITS_COMPLEX;
		pm.h.msgh_size = sizeof(pm);
		pm.h.msgh_id = id;
		nt_set_type(&pm.t, body->type, 32, 1);
		nt_set_type(&pm.t2, MACH_MSG_TYPE_INTEGER_32, 32, 2);
		wm.size = sizeof(pm);
		memcpy(buf + len, &pm, sizeof(pm));
		len += sizeof(pm);
	} else {
		memset(&m, 0, sizeof(m));
		m.h.msgh_size = sizeof(m);
		m.h.msgh_id = id;
		nt_set_type(&m.t, MACH_MSG_TYPE_INTEGER_32, 32, 2);
		wm.size = sizeof(m);
		memcpy(buf + len, &m, sizeof(m));
		len += sizeof(m);
	}
	hdr(&wm.h, MVM_WF_MSG, len);
	memcpy(buf, &wm, sizeof(wm));
	send_frame(fd, buf, len);
}

/* The victim tells us (on its connection back) that `token` is dead. */
static void
expect_death(int back, const uint8_t token[16])
{
	struct mvm_wctl c;
	uint64_t end = nt_now_ms() + 5000;

	for (;;) {
		ssize_t n = recv_frame(back, &c, sizeof(c), 1000);

		if (n == (ssize_t)sizeof(c) && c.h.type == MVM_WF_DEATH && memcmp(c.token, token, 16) == 0)
			return;
		if (n == 0 || nt_now_ms() > end)
			fail_msg("no DEATH frame for the token");
	}
}

static void
random_bytes(void *buf, size_t len)
{
	uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(rand() >> 7);
}

static int
forge_setup(void **state)
{
	struct sockaddr_un sa;
	uint64_t t0, t1;

	if (nt_setup(state) != 0)
		return -1;
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	R.pid = (uint32_t)getpid();
	R.lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	sun_of(&sa, R.pid);
	if (R.lfd < 0 || bind(R.lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(R.lfd, 16) != 0)
		return -1;
	R.v = nt_spawn("victim", victim, 0);
	R.vpid = (uint32_t)R.v->pid;
	R.vinc = nt_hear(R.v);
	t0 = nt_hear(R.v);
	t1 = nt_hear(R.v);
	memcpy(R.vtok, &t0, 8);
	memcpy(R.vtok + 8, &t1, 8);
	return 0;
}

static int
forge_teardown(void **state)
{
	close(R.lfd);
	return nt_teardown(state);
}

/* Orders for the victim. */
static uint64_t
v_expect_msg(mach_msg_id_t id)
{
	nt_order(R.v, V_EXPECT_MSG);
	nt_order(R.v, (uint64_t)id);
	return nt_hear(R.v);
}

static uint64_t
v_expect_none(void)
{
	nt_order(R.v, V_EXPECT_NONE);
	return nt_hear(R.v);
}

static void
v_stats(uint64_t *peers, uint64_t *dead, uint64_t *frames_in)
{
	nt_order(R.v, V_STATS);
	*peers = nt_hear(R.v);
	*dead = nt_hear(R.v);
	*frames_in = nt_hear(R.v);
}

static void
v_exit(void)
{
	nt_order(R.v, V_EXIT);
	nt_expect_ok(R.v);
}

/* ---- forged and stale references ---------------------------------------------------------- */

static void
test_forged_references(void **state)
{
	uint8_t forged[16], stale[16];
	struct mvm_wref w;
	uint64_t inc = 0, peers, dead, fin, fin2;
	int fd, back;

	(void)state;
	random_bytes(&inc, sizeof(inc));
	inc |= 1;
	fd = connect_as(inc, &back);

	/* The control: a frame to the real token is delivered. */
	send_msg(fd, R.vtok, 1, NULL);
	assert_int_equal(v_expect_msg(1), BODY_NONE);

	/* A random token: never delivered; we hear it is dead. */
	random_bytes(forged, sizeof(forged));
	send_msg(fd, forged, 2, NULL);
	expect_death(back, forged);
	fin = v_expect_none();

	/* Rights that name a random token of the victim's, the victim itself, a node that
	 * does not exist: dead names. */
	memset(&w, 0, sizeof(w));
	w.kind = MVM_WR_YOURS;
	w.type = MACH_MSG_TYPE_PORT_SEND;
	random_bytes(w.token, 16);
	send_msg(fd, R.vtok, 3, &w);
	assert_int_equal(v_expect_msg(3), BODY_DEAD);
	w.kind = MVM_WR_NODE;
	w.pid = R.vpid;
	w.inc = R.vinc;
	memcpy(w.token, R.vtok, 16);  /* even with the port's real token */
	send_msg(fd, R.vtok, 4, &w);
	assert_int_equal(v_expect_msg(4), BODY_DEAD);
	w.pid = 0x7ffffff0u;            /* above any pid */
	random_bytes(&w.inc, sizeof(w.inc));
	send_msg(fd, R.vtok, 5, &w);
	assert_int_equal(v_expect_msg(5), BODY_DEAD);
	w.kind = MVM_WR_YOURS;
	w.type = MACH_MSG_TYPE_PORT_SEND_ONCE;
	random_bytes(w.token, 16);
	send_msg(fd, R.vtok, 6, &w);
	assert_int_equal(v_expect_msg(6), BODY_DEAD);

	/* A stale token: the port died. Never delivered, to the port or any other. */
	memcpy(stale, R.vtok, 16);
	nt_order(R.v, V_DESTROY);
	nt_hear(R.v);
	v_stats(&peers, &dead, &fin);
	send_msg(fd, stale, 7, NULL);
	expect_death(back, stale);
	fin2 = v_expect_none();
	assert_int_equal(fin2, fin);

	close(fd);
	close(back);
	v_exit();
	(void)peers;
	(void)dead;
}

/* ---- connections that lie ------------------------------------------------------------------- */

static void
test_hello_refused(void **state)
{
	uint64_t inc1, inc2, peers, dead, fin, fin0;
	uint8_t junk[64];
	int fd, back;

	(void)state;
	random_bytes(&inc1, sizeof(inc1));
	inc1 |= 1;
	inc2 = inc1 + 2;
	v_stats(&peers, &dead, &fin0);

	/* For another incarnation of the victim (the one before a restart under the same
	 * pid, say): refused, and the message that follows is not delivered. */
	fd = connect_victim(R.pid, inc1, R.vinc ^ 0x100, MVM_WIRE_VERSION);
	send_msg(fd, R.vtok, 10, NULL);
	assert_refused(fd);
	close(fd);
	fd = connect_victim(R.pid, inc1, 0, MVM_WIRE_VERSION);
	send_msg(fd, R.vtok, 11, NULL);
	assert_refused(fd);
	close(fd);

	/* Lying about our pid (SO_PEERCRED says otherwise). */
	fd = connect_victim(R.pid + 1, inc1, R.vinc, MVM_WIRE_VERSION);
	send_msg(fd, R.vtok, 12, NULL);
	assert_refused(fd);
	close(fd);
	fd = connect_victim(R.vpid, R.vinc, R.vinc, MVM_WIRE_VERSION);
	assert_refused(fd);
	close(fd);

	/* Another version; a message without a HELLO. */
	fd = connect_victim(R.pid, inc1, R.vinc, MVM_WIRE_VERSION + 1);
	send_msg(fd, R.vtok, 13, NULL);
	assert_refused(fd);
	close(fd);
	fd = connect_victim(0, 0, 0, 0);
	send_msg(fd, R.vtok, 14, NULL);
	assert_refused(fd);
	close(fd);
	fin = v_expect_none();
	assert_int_equal(fin, fin0);
	v_stats(&peers, &dead, &fin);
	assert_int_equal(peers, 0);
	assert_int_equal(dead, 0);

	/* A good connection that then sends junk: closed; that incarnation is dead for good. */
	fd = connect_as(inc1, &back);
	send_msg(fd, R.vtok, 15, NULL);
	assert_int_equal(v_expect_msg(15), BODY_NONE);
	memset(junk, 0xee, sizeof(junk));
	send_frame(fd, junk, sizeof(junk));
	assert_refused(fd);
	assert_refused(back);
	close(fd);
	close(back);
	v_stats(&peers, &dead, &fin);
	assert_int_equal(peers, 0);
	assert_int_equal(dead, 1);
	fd = connect_victim(R.pid, inc1, R.vinc, MVM_WIRE_VERSION);
	send_msg(fd, R.vtok, 16, NULL);
	assert_refused(fd);
	close(fd);
	assert_int_equal(v_expect_none(), fin);

	/* A message frame that does not hold together: the same. */
	fd = connect_as(inc2, &back);
	{
		struct {
			struct mvm_wmsg wm;
			struct nt_msg m;
		} f;

		memset(&f, 0, sizeof(f));
		hdr(&f.wm.h, MVM_WF_MSG, sizeof(f));
		f.wm.size = sizeof(f.m);
		f.wm.nports = 3;        /* references it does not carry */
		f.wm.dest.kind = MVM_WR_YOURS;
		f.wm.dest.type = MACH_MSG_TYPE_PORT_SEND;
		memcpy(f.wm.dest.token, R.vtok, 16);
		f.m.h.msgh_id = 17;
		send_frame(fd, &f, sizeof(f));
	}
	assert_refused(fd);
	close(fd);
	close(back);
	assert_int_equal(v_expect_none(), fin);

	/* A new incarnation is a new node: accepted. */
	fd = connect_as(inc2 + 2, &back);
	send_msg(fd, R.vtok, 18, NULL);
	assert_int_equal(v_expect_msg(18), BODY_NONE);
	v_stats(&peers, &dead, &fin);
	assert_int_equal(peers, 1);
	assert_int_equal(dead, 2);
	assert_int_equal(fin, fin0 + 2);
	close(fd);
	close(back);
	v_exit();
}

/*
 * Two connections from one incarnation; the first ends, so that incarnation is dead.
 * Once the victim counts it dead, a frame on the second connection is refused: a dead
 * incarnation never sends again. (Which of the two the victim reads first when both
 * are ready at once is not defined: the test waits for the death to be counted.)
 */
static void
test_dead_incarnation_silenced(void **state)
{
	uint64_t inc, peers, dead, fin;
	struct mvm_whello h;
	int fd1, fd2, back;

	(void)state;
	random_bytes(&inc, sizeof(inc));
	inc |= 1;
	fd1 = connect_as(inc, &back);
	send_msg(fd1, R.vtok, 20, NULL);
	assert_int_equal(v_expect_msg(20), BODY_NONE);
	/* The second connection is accepted (the victim answers its HELLO). */
	fd2 = connect_victim(R.pid, inc, R.vinc, MVM_WIRE_VERSION);
	assert_int_equal(recv_frame(fd2, &h, sizeof(h), 5000), sizeof(h));
	assert_int_equal(h.h.type, MVM_WF_HELLO);
	v_stats(&peers, &dead, &fin);
	assert_int_equal(peers, 1);

	close(fd1);
	for (uint64_t end = nt_now_ms() + 5000; dead == 0;) {
		assert_true(nt_now_ms() < end);
		v_stats(&peers, &dead, &fin);
	}
	send_msg(fd2, R.vtok, 21, NULL);
	assert_refused(fd2);
	assert_refused(back);
	assert_int_equal(v_expect_none(), fin);
	v_stats(&peers, &dead, &fin);
	assert_int_equal(peers, 0);
	assert_int_equal(dead, 1);
	close(fd2);
	close(back);
	v_exit();
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_forged_references, forge_setup, forge_teardown),
		cmocka_unit_test_setup_teardown(test_hello_refused, forge_setup, forge_teardown),
		cmocka_unit_test_setup_teardown(test_dead_incarnation_silenced, forge_setup,
		    forge_teardown),
	};

	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
