/*
 * tools/mig/mvm-mig.c: machvm's interface generator. It reads one interface description
 * (defs/memory_object.mdefs) and writes everything derived from it: the Mach headers
 * with client stubs and server prototypes, machvm's ops tables and kernel-side senders,
 * the C source with the message tables, stubs and demultiplexers, the weak default server
 * routines, and one man page per routine.
 *
 * Usage:
 *   mvm-mig DEFS --sources DIR     the generated C sources, DIR/<source> and DIR/<weak-source>
 *   mvm-mig DEFS --headers DIR     the headers, under the include directory DIR
 *   mvm-mig DEFS --man DIR         the man pages, DIR/<routine>.3
 *   mvm-mig DEFS --check INC MAN   exit 1 unless INC and MAN hold what --headers and --man
 *                                  would write (the headers and pages are kept in the tree)
 *
 * Grammar (line oriented; '#' starts a comment line; fields are separated by blanks):
 *
 *   native-header PATH            header for machvm's ops tables and senders
 *   source FILE                   generated C source (tables, stubs, demultiplexers)
 *   weak-source FILE              generated C source with the weak default routines
 *   subsystem NAME BASE ... end   with lines:
 *     sender kernel|manager       who sends the requests
 *     sender-prefix PREFIX        kernel senders are PREFIX<op> (sender kernel)
 *     server-header PATH          Mach server prototypes and demultiplexers (sender kernel)
 *     demux NAME                  the Mach demultiplexer; seqnos_NAME is the seqnos one
 *     user-header PATH            Mach client stubs (sender manager)
 *     ops STRUCT DEMUX            ops table struct and its demultiplexer; subsystems that
 *                                 name the same STRUCT share one table and demultiplexer
 *   routine NAME ID simpleroutine|routine ... end, in the last subsystem, with lines:
 *     op NAME                     the ops table member and the sender suffix
 *     request NAME CTYPE DISP     the request port; DISP poly: the sender chooses
 *     in|out|inout NAME CTYPE WIRE [DISP [OUT-DISP]] [poly] [dealloc]
 *     brief TEXT / doc TEXT / arg NAME TEXT / return CODE TEXT / see NAME...
 *
 * The program is written for clarity, not speed: it runs once per build.
 */
#define _GNU_SOURCE 1
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#define MAXARGS 16
#define MAXRET 8
#define MAXSS 8
#define MAXRT 64

enum dir { DIR_IN, DIR_OUT, DIR_INOUT };
enum wire { W_I32, W_I64, W_PORT, W_OOL };

struct arg {
	char *name, *ctype;
	enum dir dir;
	enum wire wire;
	int disp, disp_out;         /* port dispositions (request, reply) */
	bool poly, dealloc;
	char *doc;
};

struct ret {
	char *code, *text;
};

struct subsystem {
	char *name;
	int base;
	bool kernel_sends;
	char *sender_prefix, *server_header, *demux, *user_header, *ops_struct, *ops_demux;
	int nroutines;              /* highest id - base + 1 */
};

struct routine {
	char *name, *op;
	int id;
	bool has_reply;
	struct subsystem *ss;
	char *dest_name, *dest_ctype;
	int dest_disp;              /* 0: polymorphic */
	struct arg args[MAXARGS];
	int nargs;
	char *brief, *doc, *see;
	struct ret rets[MAXRET];
	int nrets;
	char *count_doc, *dealloc_doc, *type_doc;
	int line;
};

static struct subsystem subsystems[MAXSS];
static int nss;
static struct routine routines[MAXRT];
static int nrt;
static char *native_header, *source_name, *weak_name;
static const char *defs_path;
static int lineno;

/* ---- utilities ------------------------------------------------------------------ */

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mvm-mig: %s:%d: ", defs_path, lineno);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		die("out of memory");
	return p;
}

/* Append text to a string owned by *dst (NULL means empty). */
static void
append(char **dst, const char *s)
{
	size_t a = *dst ? strlen(*dst) : 0, b = strlen(s);
	char *p = realloc(*dst, a + b + 1);

	if (p == NULL)
		die("out of memory");
	memcpy(p + a, s, b + 1);
	*dst = p;
}

static char *
upper(const char *s)
{
	char *p = xstrdup(s);

	for (char *q = p; *q; q++)
		*q = (char)toupper((unsigned char)*q);
	return p;
}

/* Split the next blank-separated word off *s; NULL at the end. */
static char *
word(char **s)
{
	char *p = *s, *w;

	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0')
		return NULL;
	w = p;
	while (*p != '\0' && *p != ' ' && *p != '\t')
		p++;
	if (*p != '\0')
		*p++ = '\0';
	*s = p;
	return w;
}

static char *
rest(char **s)
{
	char *p = *s;

	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

static const struct {
	const char *name;
	int value;
} dispositions[] = {
	{ "MOVE_RECEIVE", 16 }, { "MOVE_SEND", 17 }, { "MOVE_SEND_ONCE", 18 },
	{ "COPY_SEND", 19 }, { "MAKE_SEND", 20 }, { "MAKE_SEND_ONCE", 21 },
};

static int
disposition(const char *s)
{
	if (s != NULL && strcmp(s, "poly") == 0)
		return 0;
	for (size_t i = 0; s != NULL && i < sizeof(dispositions) / sizeof(dispositions[0]); i++)
		if (strcmp(s, dispositions[i].name) == 0)
			return dispositions[i].value;
	die("bad port disposition '%s'", s ? s : "(none)");
}

static const char *
disp_macro(int d)
{
	static char buf[64];

	for (size_t i = 0; i < sizeof(dispositions) / sizeof(dispositions[0]); i++)
		if (dispositions[i].value == d) {
			snprintf(buf, sizeof(buf), "MACH_MSG_TYPE_%s", dispositions[i].name);
			return buf;
		}
	return "0";
}

static const char *
received_name(int d)
{
	switch (d) {
	case 16: return "PORT_RECEIVE";
	case 17: case 19: case 20: return "PORT_SEND";
	case 18: case 21: return "PORT_SEND_ONCE";
	default: return "any send right";
	}
}

/* ---- parsing -------------------------------------------------------------------- */

static struct arg *
find_arg(struct routine *r, const char *name)
{
	for (int i = 0; i < r->nargs; i++)
		if (strcmp(r->args[i].name, name) == 0)
			return &r->args[i];
	return NULL;
}

static void
parse_arg(struct routine *r, enum dir d, char *s)
{
	struct arg *a;
	char *w;

	if (r->nargs == MAXARGS)
		die("too many arguments");
	a = &r->args[r->nargs++];
	a->dir = d;
	if ((w = word(&s)) == NULL)
		die("argument name missing");
	a->name = xstrdup(w);
	if ((w = word(&s)) == NULL)
		die("argument type missing");
	a->ctype = xstrdup(w);
	if ((w = word(&s)) == NULL)
		die("wire type missing");
	if (strcmp(w, "int32") == 0)
		a->wire = W_I32;
	else if (strcmp(w, "int64") == 0)
		a->wire = W_I64;
	else if (strcmp(w, "port") == 0)
		a->wire = W_PORT;
	else if (strcmp(w, "ool") == 0)
		a->wire = W_OOL;
	else
		die("bad wire type '%s'", w);
	if (a->wire == W_PORT) {
		a->disp = disposition(word(&s));
		if (a->disp == 0)
			die("a body port needs a disposition");
		a->disp_out = a->disp;
		if (d == DIR_INOUT)
			a->disp_out = disposition(word(&s));
	}
	while ((w = word(&s)) != NULL) {
		if (strcmp(w, "poly") == 0 && a->wire == W_PORT)
			a->poly = true;
		else if (strcmp(w, "dealloc") == 0 && a->wire == W_OOL)
			a->dealloc = true;
		else
			die("bad flag '%s'", w);
	}
	if (d != DIR_IN && (a->wire == W_OOL || a->poly))
		die("out-of-line and polymorphic arguments are in-only");
	if (d == DIR_OUT && a->wire == W_PORT)
		die("out ports are not supported; use inout");
}

static void
parse(const char *path)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	struct subsystem *ss = NULL;
	struct routine *r = NULL;
	enum { TOP, SS, RT } state = TOP;

	defs_path = path;
	if (f == NULL) {
		fprintf(stderr, "mvm-mig: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	while (getline(&line, &cap, f) >= 0) {
		char *s = line, *kw;
		size_t len = strlen(s);

		lineno++;
		while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' '))
			s[--len] = '\0';
		kw = word(&s);
		if (kw == NULL || kw[0] == '#')
			continue;
		if (state == TOP) {
			if (strcmp(kw, "native-header") == 0) {
				native_header = xstrdup(rest(&s));
			} else if (strcmp(kw, "source") == 0) {
				source_name = xstrdup(rest(&s));
			} else if (strcmp(kw, "weak-source") == 0) {
				weak_name = xstrdup(rest(&s));
			} else if (strcmp(kw, "subsystem") == 0) {
				char *name = word(&s), *base = word(&s);

				if (nss == MAXSS || name == NULL || base == NULL)
					die("bad subsystem line");
				ss = &subsystems[nss++];
				ss->name = xstrdup(name);
				ss->base = atoi(base);
				state = SS;
			} else if (strcmp(kw, "routine") == 0) {
				char *name = word(&s), *id = word(&s), *kind = word(&s);

				if (ss == NULL)
					die("routine outside a subsystem");
				if (nrt == MAXRT || name == NULL || id == NULL || kind == NULL)
					die("bad routine line");
				r = &routines[nrt++];
				r->name = xstrdup(name);
				r->id = atoi(id);
				r->line = lineno;
				if (strcmp(kind, "routine") == 0)
					r->has_reply = true;
				else if (strcmp(kind, "simpleroutine") != 0)
					die("bad routine kind '%s'", kind);
				r->ss = ss;
				if (r->id < ss->base || r->id >= ss->base + 100)
					die("id %d outside subsystem %s", r->id, ss->name);
				for (int i = 0; i < nrt - 1; i++)
					if (routines[i].id == r->id || strcmp(routines[i].name, r->name) == 0)
						die("duplicate routine %s / id %d", r->name, r->id);
				if (r->id - ss->base + 1 > ss->nroutines)
					ss->nroutines = r->id - ss->base + 1;
				state = RT;
			} else {
				die("unknown keyword '%s'", kw);
			}
		} else if (state == SS) {
			char *v;

			if (strcmp(kw, "end") == 0) {
				if (ss->kernel_sends && (ss->sender_prefix == NULL || ss->server_header == NULL || ss->demux == NULL))
					die("a kernel-sent subsystem needs sender-prefix, server-header and demux");
				if (!ss->kernel_sends && ss->user_header == NULL)
					die("a manager-sent subsystem needs user-header");
				state = TOP;
				continue;
			}
			v = word(&s);
			if (v == NULL)
				die("value missing after '%s'", kw);
			if (strcmp(kw, "sender") == 0)
				ss->kernel_sends = strcmp(v, "kernel") == 0;
			else if (strcmp(kw, "sender-prefix") == 0)
				ss->sender_prefix = xstrdup(v);
			else if (strcmp(kw, "server-header") == 0)
				ss->server_header = xstrdup(v);
			else if (strcmp(kw, "demux") == 0)
				ss->demux = xstrdup(v);
			else if (strcmp(kw, "user-header") == 0)
				ss->user_header = xstrdup(v);
			else if (strcmp(kw, "ops") == 0) {
				char *d = word(&s);

				if (d == NULL)
					die("ops needs a struct and a demultiplexer");
				ss->ops_struct = xstrdup(v);
				ss->ops_demux = xstrdup(d);
			} else
				die("unknown subsystem keyword '%s'", kw);
		} else {
			if (strcmp(kw, "end") == 0) {
				if (r->op == NULL || r->dest_name == NULL || r->brief == NULL || r->doc == NULL)
					die("routine %s lacks op, request, brief or doc", r->name);
				for (int i = 0; i < r->nargs; i++)
					if (r->args[i].doc == NULL)
						die("argument %s of %s is not documented", r->args[i].name, r->name);
				if (r->nrets == 0)
					die("routine %s documents no return value", r->name);
				state = TOP;
				continue;
			}
			if (strcmp(kw, "op") == 0) {
				r->op = xstrdup(rest(&s));
			} else if (strcmp(kw, "request") == 0) {
				char *n = word(&s), *t = word(&s), *d = word(&s);

				if (n == NULL || t == NULL || d == NULL)
					die("bad request line");
				r->dest_name = xstrdup(n);
				r->dest_ctype = xstrdup(t);
				r->dest_disp = disposition(d);
			} else if (strcmp(kw, "in") == 0) {
				parse_arg(r, DIR_IN, s);
			} else if (strcmp(kw, "out") == 0) {
				parse_arg(r, DIR_OUT, s);
			} else if (strcmp(kw, "inout") == 0) {
				parse_arg(r, DIR_INOUT, s);
			} else if (strcmp(kw, "brief") == 0) {
				r->brief = xstrdup(rest(&s));
			} else if (strcmp(kw, "doc") == 0) {
				char *t = rest(&s);

				if (*t == '\0') {
					append(&r->doc, "\n");
				} else {
					if (r->doc != NULL && r->doc[strlen(r->doc) - 1] != '\n')
						append(&r->doc, " ");
					append(&r->doc, t);
				}
			} else if (strcmp(kw, "arg") == 0) {
				char *n = word(&s), *t = rest(&s);
				struct arg *a;
				size_t ln;

				if (n == NULL || *t == '\0')
					die("bad arg line");
				ln = strlen(n);
				if ((a = find_arg(r, n)) != NULL) {
					a->doc = xstrdup(t);
				} else if (strcmp(n, r->dest_name) == 0) {
					r->type_doc = xstrdup(t);   /* the request port's text */
				} else if (ln > 6 && strcmp(n + ln - 6, "_count") == 0) {
					r->count_doc = xstrdup(t);
				} else if (strcmp(n, "dealloc") == 0) {
					r->dealloc_doc = xstrdup(t);
				} else {
					die("arg %s is not an argument of %s", n, r->name);
				}
			} else if (strcmp(kw, "return") == 0) {
				char *c = word(&s);

				if (c == NULL || r->nrets == MAXRET)
					die("bad return line");
				r->rets[r->nrets].code = xstrdup(c);
				r->rets[r->nrets].text = xstrdup(rest(&s));
				r->nrets++;
			} else if (strcmp(kw, "see") == 0) {
				r->see = xstrdup(rest(&s));
			} else {
				die("unknown routine keyword '%s'", kw);
			}
		}
	}
	free(line);
	fclose(f);
	if (state != TOP)
		die("missing 'end'");
	if (native_header == NULL || source_name == NULL || weak_name == NULL)
		die("native-header, source and weak-source are required");
	for (int i = 0; i < nrt; i++) {
		int ndealloc = 0;

		for (int j = 0; j < routines[i].nargs; j++)
			ndealloc += routines[i].args[j].dealloc;
		if (ndealloc > 1) {
			lineno = routines[i].line;
			die("at most one dealloc argument per routine");
		}
	}
}

/* ---- C declarations ------------------------------------------------------------- */

/* Wire facts of an argument. */
static bool in_request(const struct arg *a) { return a->dir != DIR_OUT; }
static bool in_reply(const struct arg *a) { return a->dir != DIR_IN; }

static const char *
fmt_of(const struct arg *a)
{
	if (a->wire == W_PORT)
		return "MVM__MO_FMT_PORT";
	if (a->wire == W_OOL)
		return "MVM__MO_FMT_OOL";
	if (strcmp(a->ctype, "vm_offset_t") == 0 || strcmp(a->ctype, "vm_size_t") == 0)
		return "MVM__MO_FMT_HEX";
	if (strcmp(a->ctype, "boolean_t") == 0)
		return "MVM__MO_FMT_BOOL";
	if (strcmp(a->ctype, "vm_prot_t") == 0)
		return "MVM__MO_FMT_PROT";
	if (strcmp(a->ctype, "kern_return_t") == 0)
		return "MVM__MO_FMT_KR";
	if (strcmp(a->ctype, "memory_object_return_t") == 0)
		return "MVM__MO_FMT_RETURN";
	if (strcmp(a->ctype, "memory_object_copy_strategy_t") == 0)
		return "MVM__MO_FMT_COPY";
	return "MVM__MO_FMT_DEC";
}

static const char *
wire_enum(enum wire w)
{
	switch (w) {
	case W_I32: return "MVM__MO_I32";
	case W_I64: return "MVM__MO_I64";
	case W_PORT: return "MVM__MO_PORT";
	default: return "MVM__MO_OOL";
	}
}

enum side { SENDER, RECEIVER, OPS };

/*
 * Print the parameter list of a routine as `side` sees it: the sender (stub or kernel
 * sender), the receiver (a Mach server routine; with seqno, the seqnos_ form) or an ops
 * member (context, request port, seqno, arguments).
 */
static void
params(FILE *o, const struct routine *r, enum side side, bool seqno, const char *sep)
{
	if (side == OPS)
		fprintf(o, "void *ctx,%s", sep);
	fprintf(o, "%s %s", r->dest_ctype, r->dest_name);
	if (side == SENDER && r->dest_disp == 0)
		fprintf(o, ",%smach_msg_type_name_t %s_type", sep, r->dest_name);
	if (seqno || side == OPS)
		fprintf(o, ",%smach_port_seqno_t seqno", sep);
	for (int i = 0; i < r->nargs; i++) {
		const struct arg *a = &r->args[i];

		if (a->dir != DIR_IN) {
			fprintf(o, ",%s%s *%s", sep, a->ctype, a->name);
			continue;
		}
		fprintf(o, ",%s%s %s", sep, a->ctype, a->name);
		if (a->wire == W_OOL) {
			fprintf(o, ",%smach_msg_type_number_t %s_count", sep, a->name);
			if (side == SENDER && a->dealloc)
				fprintf(o, ",%sboolean_t dealloc", sep);
		}
		if (a->wire == W_PORT && a->poly && side != SENDER)
			fprintf(o, ",%smach_msg_type_name_t %s_type", sep, a->name);
	}
}

/*
 * Print the parameter list (and the closing parenthesis) starting at column col,
 * wrapping lines before 92 columns with a four-space indent.
 */
static void
wrapped_params(FILE *o, int col, const struct routine *r, enum side side, bool seqno)
{
	char *buf = NULL, *tok, *save = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	bool first = true;

	params(m, r, side, seqno, "\001");
	fclose(m);
	for (tok = strtok_r(buf, "\001", &save); tok != NULL; tok = strtok_r(NULL, "\001", &save)) {
		int n = (int)strlen(tok);

		if (!first) {
			if (col + 1 + n + 2 > 92) {
				fputs("\n    ", o);
				col = 4;
			} else {
				fputc(' ', o);
				col++;
			}
		}
		fputs(tok, o);
		col += n;
		first = false;
	}
	fputc(')', o);
	free(buf);
}

/* A prototype, or with def the head of a definition (return type on its own line). */
static void
prototype(FILE *o, const char *prefix, const char *name, const struct routine *r,
    enum side side, bool seqno)
{
	int col = fprintf(o, "%skern_return_t %s%s(", prefix, seqno ? "seqnos_" : "", name);

	wrapped_params(o, col, r, side, seqno);
}

static void
definition(FILE *o, const char *prefix, const char *name, const struct routine *r,
    enum side side, bool seqno)
{
	int col;

	fprintf(o, "%skern_return_t\n", prefix);
	col = fprintf(o, "%s%s(", seqno ? "seqnos_" : "", name);
	wrapped_params(o, col, r, side, seqno);
}

static char *
sender_name(const struct routine *r)
{
	char *s = NULL;

	if (!r->ss->kernel_sends)
		return xstrdup(r->name);
	append(&s, r->ss->sender_prefix);
	append(&s, r->op);
	return s;
}

static char *
fn_type(const struct subsystem *ss, const struct routine *r)
{
	char *s = NULL;
	size_t n = strlen(ss->ops_struct);

	append(&s, ss->ops_struct);
	if (n > 4 && strcmp(s + n - 4, "_ops") == 0)
		s[n - 4] = '\0';
	append(&s, "_");
	append(&s, r->op);
	append(&s, "_fn");
	return s;
}

/* Wire size of a message's items with out-of-line items in short form. */
static int
items_size(const struct routine *r, bool reply, int *nool)
{
	int size = reply ? 16 : 0;      /* RetCode */

	*nool = 0;
	for (int i = 0; i < r->nargs; i++) {
		const struct arg *a = &r->args[i];

		if (reply ? !in_reply(a) : !in_request(a))
			continue;
		size += 16;
		*nool += a->wire == W_OOL;
	}
	return size;
}

static bool
msg_complex(const struct routine *r, bool reply)
{
	for (int i = 0; i < r->nargs; i++) {
		const struct arg *a = &r->args[i];

		if (reply ? !in_reply(a) : !in_request(a))
			continue;
		if (a->wire == W_PORT || a->wire == W_OOL)
			return true;
	}
	return false;
}

static void
header_top(FILE *o, const char *path, const char *what, const char *safety)
{
	char *guard = upper(path);

	for (char *p = guard; *p; p++)
		if (!isalnum((unsigned char)*p))
			*p = '_';
	fprintf(o, "/*\n * <%s>: %s\n *\n", path, what);
	fprintf(o, " * Generated by tools/mig/mvm-mig.c from defs/memory_object.mdefs: do not edit; after\n * changing the description, build the target mvm_mo_regen.\n");
	fprintf(o, " * Thread safety: %s\n */\n", safety);
	fprintf(o, "#ifndef MVM_GEN_%s\n#define MVM_GEN_%s\n\n", guard, guard);
	fprintf(o, "#include <mach/mach_types.h>\n#include <mach/mig_errors.h>\n");
	fprintf(o, "#include <machvm/export.h>\n\n");
	fprintf(o, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
	free(guard);
}

static void
header_bottom(FILE *o, const char *path)
{
	char *guard = upper(path);

	for (char *p = guard; *p; p++)
		if (!isalnum((unsigned char)*p))
			*p = '_';
	fprintf(o, "#ifdef __cplusplus\n}\n#endif\n\n#endif /* MVM_GEN_%s */\n", guard);
	free(guard);
}

/* <mach/..._server.h>: the routines a manager defines, and the demultiplexers. */
static void
gen_server_header(FILE *o, const struct subsystem *ss)
{
	header_top(o, ss->server_header,
	    "the server side of a memory object interface: the routines a memory\n"
	    " * manager defines (plain, and seqnos_ with the message's sequence number) and the\n"
	    " * demultiplexers that mach_msg_server() runs.",
	    "the demultiplexers keep no state and may run in many threads\n"
	    " * at once; the routines they call must be as thread-safe as the server loop needs.");
	fprintf(o, "/*\n * Demultiplexers (subsystem %s, ids %d..%d). A request with another id\n",
	    ss->name, ss->base, ss->base + ss->nroutines - 1);
	fprintf(o, " * returns FALSE with RetCode MIG_BAD_ID; a malformed one returns TRUE with\n");
	fprintf(o, " * RetCode MIG_BAD_ARGUMENTS, so that mach_msg_server() destroys it.\n */\n");
	fprintf(o, "MVM_EXTERN boolean_t %s(mach_msg_header_t *in, mach_msg_header_t *out);\n", ss->demux);
	fprintf(o, "MVM_EXTERN boolean_t seqnos_%s(mach_msg_header_t *in, mach_msg_header_t *out);\n\n", ss->demux);
	fprintf(o, "/*\n * Server routines. libmachvm holds a default for each (a weak symbol) that\n");
	fprintf(o, " * answers MIG_BAD_ID, so a program defines only those it serves. A routine that\n");
	fprintf(o, " * returns KERN_SUCCESS owns the rights and out-of-line memory it received; any\n");
	fprintf(o, " * other result makes mach_msg_server() destroy them, so it must not keep them.\n */\n");
	for (int i = 0; i < nrt; i++) {
		const struct routine *r = &routines[i];

		if (r->ss != ss)
			continue;
		fprintf(o, "\n/* %d: %s */\n", r->id, r->brief);
		prototype(o, "MVM_EXTERN ", r->name, r, RECEIVER, false);
		fprintf(o, ";\n");
		prototype(o, "MVM_EXTERN ", r->name, r, RECEIVER, true);
		fprintf(o, ";\n");
	}
	fprintf(o, "\n");
	header_bottom(o, ss->server_header);
}

/* <mach/memory_object_control.h>: the stubs a manager calls. */
static void
gen_user_header(FILE *o, const struct subsystem *ss)
{
	header_top(o, ss->user_header,
	    "the calls a memory manager makes on a memory cache control port\n"
	    " * (GNU Mach's \"mach\" subsystem numbering), as Mach client stubs.",
	    "every stub may be called from any thread, concurrently.");
	fprintf(o, "/*\n * A simpleroutine sends with mach_msg(MACH_SEND_MSG) and returns its result;\n");
	fprintf(o, " * the kernel reports no error back. A routine waits for the reply on the\n");
	fprintf(o, " * thread's MIG reply port and returns the kernel's result, MIG_REPLY_MISMATCH or\n");
	fprintf(o, " * MIG_TYPE_ERROR for a bad reply, or the mach_msg error.\n */\n");
	for (int i = 0; i < nrt; i++) {
		const struct routine *r = &routines[i];

		if (r->ss != ss)
			continue;
		fprintf(o, "\n/* %d: %s */\n", r->id, r->brief);
		prototype(o, "MVM_EXTERN ", r->name, r, SENDER, false);
		fprintf(o, ";\n");
	}
	fprintf(o, "\n");
	header_bottom(o, ss->user_header);
}

static bool
ops_seen_before(int ssi)
{
	for (int j = 0; j < ssi; j++)
		if (subsystems[j].ops_struct != NULL && subsystems[ssi].ops_struct != NULL &&
		    strcmp(subsystems[j].ops_struct, subsystems[ssi].ops_struct) == 0)
			return true;
	return false;
}

static int
max_msg_size(const struct subsystem *ss)
{
	int max = 40;   /* a short MIG reply */

	for (int i = 0; i < nrt; i++) {
		const struct routine *r = &routines[i];
		int nool, size;

		if (r->ss != ss)
			continue;
		size = 24 + items_size(r, false, &nool) + 8 * nool;
		if (size > max)
			max = size;
		size = 24 + items_size(r, true, &nool);
		if (size > max)
			max = size;
	}
	return max;
}

/* <machvm/memory_object_ops.h>: ops tables, their demultiplexers, kernel senders. */
static void
gen_native_header(FILE *o)
{
	header_top(o, native_header,
	    "machvm's generated side of the memory object interfaces: the\n"
	    " * ops tables a program fills to serve several kinds of objects, their\n"
	    " * demultiplexers, the senders the in-process kernel uses (named mvm_mo_send_* so that\n"
	    " * the Mach names stay free for the manager's routines), and message size bounds.\n"
	    " * Include <machvm/memory_object.h>, which includes this header.",
	    "the demultiplexers and senders keep no state and may be called\n"
	    " * from any thread; ops are called in the demultiplexing thread.");
	fprintf(o, "/* The version of the ops tables this header describes (members are only appended). */\n");
	fprintf(o, "#define MVM_MEMORY_OBJECT_OPS_VERSION 1\n\n");
	fprintf(o, "/* Largest message (request or reply) of each subsystem, for mach_msg_server(). */\n");
	for (int s = 0; s < nss; s++) {
		char *u = upper(subsystems[s].name);

		fprintf(o, "#define MVM_%s_MSG_SIZE_MAX %d\n", u, max_msg_size(&subsystems[s]));
		free(u);
	}
	fprintf(o, "\n");
	for (int s = 0; s < nss; s++) {
		const struct subsystem *ss = &subsystems[s];

		if (ss->ops_struct == NULL || ops_seen_before(s))
			continue;
		fprintf(o, "/*\n * struct %s: one member per routine, called as\n", ss->ops_struct);
		fprintf(o, " * member(ctx, request port, seqno, arguments...). A NULL member (or one beyond\n");
		fprintf(o, " * the table's version) answers MIG_BAD_ID. Ownership is as for the Mach routines:\n");
		fprintf(o, " * on KERN_SUCCESS the member owns the rights and memory it received.\n */\n");
		for (int i = 0; i < nrt; i++) {
			const struct routine *r = &routines[i];
			char *t;

			if (r->ss->ops_struct == NULL || strcmp(r->ss->ops_struct, ss->ops_struct) != 0)
				continue;
			t = fn_type(ss, r);
			wrapped_params(o, fprintf(o, "typedef kern_return_t %s(", t), r, OPS, true);
			fprintf(o, ";\n");
			free(t);
		}
		fprintf(o, "\nstruct %s {\n\tunsigned version;    /* MVM_MEMORY_OBJECT_OPS_VERSION */\n", ss->ops_struct);
		for (int i = 0; i < nrt; i++) {
			const struct routine *r = &routines[i];
			char *t;

			if (r->ss->ops_struct == NULL || strcmp(r->ss->ops_struct, ss->ops_struct) != 0)
				continue;
			t = fn_type(ss, r);
			fprintf(o, "\t%s *%s;%*s/* %d %s */\n", t, r->op,
			    (int)(28 - strlen(t) - strlen(r->op)) > 1 ? (int)(28 - strlen(t) - strlen(r->op)) : 1,
			    "", r->id, r->name);
			free(t);
		}
		fprintf(o, "};\n\n");
		fprintf(o, "/*\n * Demultiplex a request to ops with context ctx: MIG's conventions and\n");
		fprintf(o, " * results, as the Mach demultiplexers (FALSE only for an unknown id).\n */\n");
		fprintf(o, "MVM_EXTERN boolean_t %s(const struct %s *ops, void *ctx,\n"
		    "    mach_msg_header_t *in, mach_msg_header_t *out);\n\n", ss->ops_demux, ss->ops_struct);
	}
	fprintf(o, "/*\n * Kernel-side senders of the kernel-to-manager messages. Each sends with\n");
	fprintf(o, " * mach_msg(MACH_SEND_MSG) and returns its result; the dispositions are the\n");
	fprintf(o, " * protocol's (see the routine's man page).\n */\n");
	for (int i = 0; i < nrt; i++) {
		const struct routine *r = &routines[i];
		char *n;

		if (!r->ss->kernel_sends)
			continue;
		n = sender_name(r);
		prototype(o, "MVM_EXTERN ", n, r, SENDER, false);
		fprintf(o, ";\n");
		free(n);
	}
	fprintf(o, "\n");
	header_bottom(o, native_header);
}

/* ---- C source ------------------------------------------------------------------- */

static void
gen_items(FILE *o, const struct routine *r, bool reply)
{
	fprintf(o, "static const struct mvm__mo_item %s_%s_items[] = {\n", r->name, reply ? "rep" : "req");
	if (reply)
		fprintf(o, "\t{ \"RetCode\", MVM__MO_I32, 0, MVM__MO_FMT_KR, 0 },\n");
	for (int i = 0; i < r->nargs; i++) {
		const struct arg *a = &r->args[i];

		if (reply ? !in_reply(a) : !in_request(a))
			continue;
		fprintf(o, "\t{ \"%s\", %s, %s, %s, %s%s },\n", a->name, wire_enum(a->wire),
		    a->wire == W_PORT ? disp_macro(reply ? a->disp_out : a->disp) : "0", fmt_of(a),
		    a->poly ? "MVM__MO_POLY" : (a->dealloc ? "MVM__MO_DEALLOC" : "0"),
		    a->poly && a->dealloc ? " | MVM__MO_DEALLOC" : "");
	}
	if (!reply && items_size(r, false, &(int){0}) == 0)
		fprintf(o, "\t{ NULL, 0, 0, 0, 0 },\n");
	fprintf(o, "};\n");
}

static void
gen_msg(FILE *o, const struct routine *r, bool reply)
{
	int nool, n = 0;

	for (int i = 0; i < r->nargs; i++)
		n += reply ? in_reply(&r->args[i]) : in_request(&r->args[i]);
	fprintf(o, "static const struct mvm__mo_msg %s_%s = {\n", r->name, reply ? "rep" : "req");
	fprintf(o, "\t.name = \"%s\", .id = %d, .complex = %s, .nitems = %d,\n", r->name,
	    r->id + (reply ? 100 : 0), msg_complex(r, reply) ? "true" : "false", n + (reply ? 1 : 0));
	fprintf(o, "\t.items = %s_%s_items, .min_size = %d,", r->name, reply ? "rep" : "req",
	    24 + items_size(r, reply, &nool));
	fprintf(o, " .nool = %d,\n};\n", nool);
}

/* The C expression that turns args[k] into the argument's type. */
static void
arg_value(FILE *o, const struct arg *a, const char *arr, int k)
{
	switch (a->wire) {
	case W_I32:
		fprintf(o, "(%s)MVM__MO_AS_I32(%s[%d])", a->ctype, arr, k);
		break;
	case W_I64:
		fprintf(o, "(%s)%s[%d].val", a->ctype, arr, k);
		break;
	case W_PORT:
		fprintf(o, "(%s)(mach_port_t)%s[%d].val", a->ctype, arr, k);
		break;
	case W_OOL:
		fprintf(o, "(%s)%s[%d].val, (mach_msg_type_number_t)%s[%d].aux", a->ctype, arr, k, arr, k);
		break;
	}
}

/* The call of a receiver-side routine, arguments taken from in[] and locals. */
static void
gen_call_args(FILE *o, const struct routine *r, bool seqno, bool ops)
{
	int k = 0;

	if (ops)
		fprintf(o, "ctx, ");
	fprintf(o, "(%s)hdr->msgh_local_port", r->dest_ctype);
	if (seqno)
		fprintf(o, ", hdr->msgh_seqno");
	for (int i = 0; i < r->nargs; i++) {
		const struct arg *a = &r->args[i];

		fprintf(o, ",\n\t\t    ");
		if (a->dir != DIR_IN) {
			fprintf(o, "&%s", a->name);
			k += a->dir == DIR_INOUT;
			continue;
		}
		arg_value(o, a, "in", k);
		if (a->wire == W_PORT && a->poly)
			fprintf(o, ", (mach_msg_type_name_t)in[%d].aux", k);
		k++;
	}
}

static bool
serves_mode(const struct routine *r, int mode)
{
	if (mode == 2)
		return r->ss->ops_struct != NULL;
	return r->ss->demux != NULL;
}

static void
gen_invoke(FILE *o, const struct routine *r)
{
	int k = 0, kout = 0;
	bool any = false;

	fprintf(o, "static kern_return_t\n%s_invoke(enum mvm__mo_mode mode, const void *ops_, void *ctx,\n"
	    "    const mach_msg_header_t *hdr, const struct mvm__mo_arg *in, struct mvm__mo_arg *out)\n{\n",
	    r->name);
	for (int i = 0; i < r->nargs; i++) {
		const struct arg *a = &r->args[i];

		if (a->dir == DIR_OUT) {
			fprintf(o, "\t%s %s = 0;\n", a->ctype, a->name);
		} else if (a->dir == DIR_INOUT) {
			fprintf(o, "\t%s %s = ", a->ctype, a->name);
			arg_value(o, a, "in", k);
			fprintf(o, ";\n");
		}
		k += in_request(a);
	}
	fprintf(o, "\tkern_return_t kr;\n\n\t(void)ops_;\n\t(void)ctx;\n\t(void)in;\n\t(void)out;\n");
	fprintf(o, "\tswitch (mode) {\n");
	if (serves_mode(r, 0)) {
		fprintf(o, "\tcase MVM__MO_PLAIN:\n\t\tkr = %s(", r->name);
		gen_call_args(o, r, false, false);
		fprintf(o, ");\n\t\tbreak;\n\tcase MVM__MO_SEQNOS:\n\t\tkr = seqnos_%s(", r->name);
		gen_call_args(o, r, true, false);
		fprintf(o, ");\n\t\tbreak;\n");
		any = true;
	}
	if (serves_mode(r, 2)) {
		fprintf(o, "\tcase MVM__MO_OPS: {\n\t\tconst struct %s *ops = ops_;\n\n", r->ss->ops_struct);
		fprintf(o, "\t\tif (ops->version < 1 || ops->%s == NULL)\n\t\t\treturn MIG_BAD_ID;\n", r->op);
		fprintf(o, "\t\tkr = ops->%s(", r->op);
		gen_call_args(o, r, true, true);
		fprintf(o, ");\n\t\tbreak;\n\t}\n");
		any = true;
	}
	fprintf(o, "\tdefault:\n\t\treturn MIG_BAD_ID;\n\t}\n");
	if (!any)
		fprintf(o, "\t(void)hdr;\n");
	if (r->has_reply) {
		fprintf(o, "\tif (kr == KERN_SUCCESS) {\n");
		for (int i = 0; i < r->nargs; i++) {
			const struct arg *a = &r->args[i];

			if (!in_reply(a))
				continue;
			fprintf(o, "\t\tout[%d].val = %s(%s);\n", kout++,
			    a->wire == W_I64 ? "MVM__MO_I64" : "MVM__MO_I32", a->name);
		}
		fprintf(o, "\t}\n");
	}
	fprintf(o, "\treturn kr;\n}\n\n");
}

/* A client stub (Mach name) or a kernel sender (mvm_ name). */
static void
gen_sender(FILE *o, const struct routine *r)
{
	char *n = sender_name(r);
	int na = 0, no = 0;

	for (int i = 0; i < r->nargs; i++) {
		na += in_request(&r->args[i]);
		no += in_reply(&r->args[i]);
	}
	definition(o, "", n, r, SENDER, false);
	fprintf(o, "\n{\n\tstruct mvm__mo_arg a[%d] = {\n", na > 0 ? na : 1);
	for (int i = 0; i < r->nargs; i++) {
		const struct arg *a = &r->args[i];
		const char *deref = a->dir == DIR_INOUT ? "*" : "";

		if (!in_request(a))
			continue;
		switch (a->wire) {
		case W_I32:
			fprintf(o, "\t\t{ .val = MVM__MO_I32(%s%s) },\n", deref, a->name);
			break;
		case W_I64:
			fprintf(o, "\t\t{ .val = MVM__MO_I64(%s%s) },\n", deref, a->name);
			break;
		case W_PORT:
			fprintf(o, "\t\t{ .val = MVM__MO_I32(%s%s) },\n", deref, a->name);
			break;
		case W_OOL:
			fprintf(o, "\t\t{ .val = (uint64_t)%s, .aux = %s_count, .dealloc = %s },\n",
			    a->name, a->name, a->dealloc ? "dealloc != FALSE" : "false");
			break;
		}
	}
	if (na == 0)
		fprintf(o, "\t\t{ .val = 0 },\n");
	fprintf(o, "\t};\n");
	if (!r->has_reply) {
		/* A polymorphic destination travels with the caller's type. */
		fprintf(o, "\n\treturn mvm__mo_send(&%s_routine, %s, ", r->name, r->dest_name);
		if (r->dest_disp != 0)
			fprintf(o, "%s, a);\n}\n\n", disp_macro(r->dest_disp));
		else
			fprintf(o, "%s_type, a);\n}\n\n", r->dest_name);
		free(n);
		return;
	}
	fprintf(o, "\tstruct mvm__mo_arg o[%d];\n\tkern_return_t kr;\n\n", no > 0 ? no : 1);
	fprintf(o, "\tkr = mvm__mo_rpc(&%s_routine, %s, a, o);\n", r->name, r->dest_name);
	fprintf(o, "\tif (kr != KERN_SUCCESS)\n\t\treturn kr;\n");
	no = 0;
	for (int i = 0; i < r->nargs; i++) {
		const struct arg *a = &r->args[i];

		if (!in_reply(a))
			continue;
		fprintf(o, "\t*%s = ", a->name);
		arg_value(o, a, "o", no++);
		fprintf(o, ";\n");
	}
	fprintf(o, "\treturn KERN_SUCCESS;\n}\n\n");
	free(n);
}

static void
gen_source(FILE *o)
{
	fprintf(o, "/*\n * src/mo/%s: generated by tools/mig/mvm-mig.c from defs/memory_object.mdefs;\n", source_name);
	fprintf(o, " * do not edit. The message tables, the glue that calls each routine, the\n");
	fprintf(o, " * demultiplexers, the client stubs and the kernel-side senders. The wire work is\n");
	fprintf(o, " * src/mo/mo_wire.c's.\n */\n");
	fprintf(o, "#include \"mo/mo.h\"\n");
	for (int s = 0; s < nss; s++) {
		if (subsystems[s].server_header)
			fprintf(o, "#include <%s>\n", subsystems[s].server_header);
		if (subsystems[s].user_header)
			fprintf(o, "#include <%s>\n", subsystems[s].user_header);
	}
	fprintf(o, "#include <%s>\n\n", native_header);
	fprintf(o, "#pragma GCC diagnostic ignored \"-Wmissing-field-initializers\"\n\n");

	for (int i = 0; i < nrt; i++) {
		const struct routine *r = &routines[i];

		fprintf(o, "/* ---- %d %s ---- */\n\n", r->id, r->name);
		gen_items(o, r, false);
		gen_msg(o, r, false);
		if (r->has_reply) {
			gen_items(o, r, true);
			gen_msg(o, r, true);
		}
		fprintf(o, "\n");
		gen_invoke(o, r);
		fprintf(o, "static const struct mvm__mo_routine %s_routine = {\n", r->name);
		fprintf(o, "\t.request = &%s_req, .reply = %s%s%s, .dest_name = \"%s\",\n", r->name,
		    r->has_reply ? "&" : "NULL", r->has_reply ? r->name : "", r->has_reply ? "_rep" : "",
		    r->dest_name);
		fprintf(o, "\t.dest_disp = %s, .invoke = %s_invoke,\n};\n\n",
		    r->dest_disp ? disp_macro(r->dest_disp) : "0", r->name);
		gen_sender(o, r);
	}

	fprintf(o, "/* ---- subsystems ---- */\n\n");
	for (int s = 0; s < nss; s++) {
		const struct subsystem *ss = &subsystems[s];

		fprintf(o, "static const struct mvm__mo_routine *const %s_routines[%d] = {\n", ss->name, ss->nroutines);
		for (int i = 0; i < nrt; i++)
			if (routines[i].ss == ss)
				fprintf(o, "\t[%d] = &%s_routine,\n", routines[i].id - ss->base, routines[i].name);
		fprintf(o, "};\n\nstatic const struct mvm__mo_subsystem %s_subsystem = {\n", ss->name);
		fprintf(o, "\t.name = \"%s\", .base = %d, .nroutines = %d, .routines = %s_routines,\n};\n\n",
		    ss->name, ss->base, ss->nroutines, ss->name);
	}
	fprintf(o, "const struct mvm__mo_subsystem *const mvm__mo_subsystems[] = {\n");
	for (int s = 0; s < nss; s++)
		fprintf(o, "\t&%s_subsystem,\n", subsystems[s].name);
	fprintf(o, "};\nconst unsigned mvm__mo_nsubsystems = %d;\n\n", nss);

	fprintf(o, "/* ---- demultiplexers ---- */\n\n");
	for (int s = 0; s < nss; s++) {
		const struct subsystem *ss = &subsystems[s];

		if (ss->demux != NULL) {
			fprintf(o, "static const struct mvm__mo_subsystem *const %s_only[] = { &%s_subsystem };\n\n",
			    ss->name, ss->name);
			for (int seq = 0; seq < 2; seq++) {
				fprintf(o, "boolean_t\n%s%s(mach_msg_header_t *in, mach_msg_header_t *out)\n{\n",
				    seq ? "seqnos_" : "", ss->demux);
				fprintf(o, "\treturn mvm__mo_demux(%s_only, 1, %s, NULL, NULL, in, out);\n}\n\n",
				    ss->name, seq ? "MVM__MO_SEQNOS" : "MVM__MO_PLAIN");
			}
		}
		if (ss->ops_struct != NULL && !ops_seen_before(s)) {
			int n = 0;

			fprintf(o, "static const struct mvm__mo_subsystem *const %s_subsystems[] = {", ss->ops_struct);
			for (int t = 0; t < nss; t++)
				if (subsystems[t].ops_struct && strcmp(subsystems[t].ops_struct, ss->ops_struct) == 0) {
					fprintf(o, " &%s_subsystem,", subsystems[t].name);
					n++;
				}
			fprintf(o, " };\n\nboolean_t\n%s(const struct %s *ops, void *ctx,\n"
			    "    mach_msg_header_t *in, mach_msg_header_t *out)\n{\n", ss->ops_demux, ss->ops_struct);
			fprintf(o, "\treturn mvm__mo_demux(%s_subsystems, %d, MVM__MO_OPS, ops, ctx, in, out);\n}\n\n",
			    ss->ops_struct, n);
		}
	}
}

static void
gen_weak(FILE *o)
{
	fprintf(o, "/*\n * src/mo/%s: generated by tools/mig/mvm-mig.c from defs/memory_object.mdefs;\n", weak_name);
	fprintf(o, " * do not edit. The default server routines: weak symbols that answer MIG_BAD_ID,\n");
	fprintf(o, " * so that a program which defines only some routines links, and the others make\n");
	fprintf(o, " * mach_msg_server() destroy their requests. They live apart from the demultiplexers\n");
	fprintf(o, " * so that no compiler can inline a default into its caller.\n */\n");
	for (int s = 0; s < nss; s++)
		if (subsystems[s].server_header)
			fprintf(o, "#include <%s>\n", subsystems[s].server_header);
	fprintf(o, "\n");
	for (int i = 0; i < nrt; i++) {
		const struct routine *r = &routines[i];

		if (r->ss->server_header == NULL)
			continue;
		for (int seq = 0; seq < 2; seq++) {
			definition(o, "__attribute__((weak)) ", r->name, r, RECEIVER, seq);
			fprintf(o, "\n{\n\treturn MIG_BAD_ID;\n}\n\n");
		}
	}
}

/* ---- man pages ------------------------------------------------------------------ */

/* Write text escaped for roff, with no line starting with a dot or quote. */
static void
roff(FILE *o, const char *s)
{
	bool bol = true;

	for (; *s; s++) {
		if (bol && (*s == '.' || *s == '\''))
			fputs("\\&", o);
		if (*s == '\\')
			fputs("\\e", o);
		else if (*s == '-')
			fputs("\\-", o);
		else
			fputc(*s, o);
		bol = *s == '\n';
	}
}

static void
man_prototype(FILE *o, const char *prefix, const char *name, const struct routine *r,
    enum side side, bool seqno)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);

	prototype(m, prefix, name, r, side, seqno);
	fprintf(m, ";\n");
	fclose(m);
	roff(o, buf);
	free(buf);
}

static void
gen_man(FILE *o, const struct routine *r)
{
	char *u = upper(r->name), *p, *see, *w;
	const struct subsystem *ss = r->ss;
	int nool, body;

	fprintf(o, ".\\\" Generated by tools/mig/mvm-mig.c from defs/memory_object.mdefs; do not edit.\n");
	fprintf(o, ".TH %s 3 \"\" \"machvm\" \"machvm Programmer's Manual\"\n", u);
	fprintf(o, ".SH NAME\n");
	if (ss->kernel_sends)
		fprintf(o, "%s, seqnos_%s \\- ", r->name, r->name);
	else
		fprintf(o, "%s \\- ", r->name);
	roff(o, r->brief);
	fprintf(o, "\n.SH SYNOPSIS\n.nf\n");
	if (ss->kernel_sends) {
		fprintf(o, ".B #include <%s>\n.PP\n", ss->server_header);
		man_prototype(o, "", r->name, r, RECEIVER, false);
		fprintf(o, ".PP\n");
		man_prototype(o, "", r->name, r, RECEIVER, true);
		fprintf(o, ".PP\n.B #include <machvm/memory_object.h>\n.PP\n");
		fprintf(o, "/* The member %s of struct %s: */\n", r->op, ss->ops_struct);
		{
			char *t = fn_type(ss, r);
			char *buf = NULL;
			size_t len = 0;
			FILE *m = open_memstream(&buf, &len);

			wrapped_params(m, fprintf(m, "typedef kern_return_t %s(", t), r, OPS, true);
			fprintf(m, ";\n.PP\n/* The kernel's sender: */\n");
			fclose(m);
			roff(o, buf);
			free(buf);
			free(t);
		}
		p = sender_name(r);
		man_prototype(o, "", p, r, SENDER, false);
		free(p);
	} else {
		fprintf(o, ".B #include <mach/mach.h>\n.PP\n");
		man_prototype(o, "", r->name, r, SENDER, false);
		fprintf(o, ".PP\n.B #include <machvm/memory_object.h>\n.PP\n");
		fprintf(o, "/* The kernel serves it through the member %s of struct %s. */\n", r->op,
		    ss->ops_struct);
	}
	fprintf(o, ".fi\n.SH DESCRIPTION\n");
	for (p = r->doc; p != NULL && *p;) {
		char *e = strchr(p, '\n');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		char *para = strndup(p, n);

		fprintf(o, ".PP\n");
		/* One sentence per output line keeps the page diffable. */
		for (char *q = para; *q;) {
			char *dot = strstr(q, ". ");

			if (dot == NULL) {
				roff(o, q);
				fputc('\n', o);
				break;
			}
			dot[1] = '\0';
			roff(o, q);
			fputc('\n', o);
			q = dot + 2;
		}
		free(para);
		p += n;
		if (*p == '\n')
			p++;
	}
	fprintf(o, ".SH ARGUMENTS\n.TP\n.I %s\n", r->dest_name);
	roff(o, r->type_doc ? r->type_doc : "The request port.");
	fprintf(o, "\n");
	if (r->dest_disp == 0)
		fprintf(o, "The kernel sends to it with the type of the right it holds.\n");
	if (ss->kernel_sends)
		fprintf(o, ".TP\n.I seqno\n(seqnos_ form and ops member) The sequence number of the message on the port it was received from.\n");
	for (int i = 0; i < r->nargs; i++) {
		const struct arg *a = &r->args[i];

		fprintf(o, ".TP\n.I %s\n", a->name);
		roff(o, a->doc);
		fprintf(o, "\n");
		if (a->wire == W_OOL) {
			fprintf(o, ".TP\n.I %s_count\n", a->name);
			roff(o, r->count_doc ? r->count_doc : "The number of bytes of data.");
			fprintf(o, "\n");
			if (a->dealloc && !ss->kernel_sends) {
				fprintf(o, ".TP\n.I dealloc\n");
				roff(o, r->dealloc_doc ? r->dealloc_doc : "TRUE to move the data out of the sender's address space.");
				fprintf(o, "\n");
			}
		}
		if (a->poly && !ss->kernel_sends)
			fprintf(o, "(The kernel's ops member also receives \\fI%s_type\\fP, the type of the right.)\n", a->name);
	}
	fprintf(o, ".SH RETURN VALUES\n");
	for (int i = 0; i < r->nrets; i++) {
		fprintf(o, ".TP\n.B %s\n", r->rets[i].code);
		roff(o, r->rets[i].text);
		fprintf(o, "\n");
	}
	if (ss->kernel_sends) {
		fprintf(o, ".PP\nWhatever a routine returns other than KERN_SUCCESS (or MIG_NO_REPLY) makes\n");
		fprintf(o, "mach_msg_server destroy the request, releasing its rights and memory.\n");
		fprintf(o, "The demultiplexers answer MIG_BAD_ARGUMENTS for a malformed message without\n");
		fprintf(o, "calling the routine.\n");
	}
	fprintf(o, ".SH MESSAGE\n");
	fprintf(o, "Id %d (%s subsystem, base %d), a %s%s.\n", r->id, ss->name, ss->base,
	    r->has_reply ? "routine whose reply has id " : "simpleroutine", "");
	if (r->has_reply)
		fprintf(o, "\\&%d.\n", r->id + 100);
	if (r->dest_disp)
		fprintf(o, "The request port travels as %s;\n", disp_macro(r->dest_disp));
	else
		fprintf(o, "The request port travels with the sender's disposition;\n");
	body = items_size(r, false, &nool);
	fprintf(o, "the body is %d bytes%s:\n.RS\n", body,
	    nool ? " with out-of-line data in short form (8 more in long form)" : "");
	for (int i = 0; i < r->nargs; i++) {
		const struct arg *a = &r->args[i];

		if (!in_request(a))
			continue;
		fprintf(o, ".br\n%s: ", a->name);
		switch (a->wire) {
		case W_I32: fprintf(o, "MACH_MSG_TYPE_INTEGER_32, inline\n"); break;
		case W_I64: fprintf(o, "MACH_MSG_TYPE_INTEGER_64, inline\n"); break;
		case W_PORT:
			fprintf(o, "%s, received as %s%s\n", disp_macro(a->disp), received_name(a->disp),
			    a->poly ? " (any send right accepted)" : "");
			break;
		case W_OOL:
			fprintf(o, "MACH_MSG_TYPE_BYTE, out of line, number = bytes%s\n",
			    a->dealloc ? ", deallocate bit chosen by the sender" : "");
			break;
		}
	}
	fprintf(o, ".RE\n");
	fprintf(o, ".SH SEE ALSO\n");
	see = xstrdup(r->see ? r->see : "");
	p = see;
	{
		bool first = true;

		while ((w = word(&p)) != NULL) {
			fprintf(o, "%s.BR %s (3)", first ? "" : ",\n", w);
			first = false;
		}
		fprintf(o, "%s.BR mach_msg_server (3)\n", first ? "" : ",\n");
	}
	free(see);
	free(u);
}

/* ---- output --------------------------------------------------------------------- */

static void
mkdirs(const char *path)
{
	char *p = xstrdup(path);

	for (char *s = p + 1; *s; s++)
		if (*s == '/') {
			*s = '\0';
			mkdir(p, 0777);
			*s = '/';
		}
	free(p);
}

/*
 * Write a file. It is always rewritten, even when unchanged, so that its time stamp
 * tells the build system that the description has been processed.
 */
static void
emit(const char *path, const char *buf, size_t len)
{
	FILE *f;

	mkdirs(path);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "mvm-mig: %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

typedef void gen_fn(FILE *o, const void *arg);

static void
produce(const char *path, void (*fn)(FILE *, const void *), const void *arg, const char *check)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *o = open_memstream(&buf, &len);

	fn(o, arg);
	fclose(o);
	if (check != NULL) {
		FILE *f = fopen(path, "rb");
		char *old = malloc(len + 1);
		size_t got = (f && old) ? fread(old, 1, len + 1, f) : 0;

		if (f == NULL || got != len || memcmp(old, buf, len) != 0) {
			fprintf(stderr, "mvm-mig: %s is out of date; build the target mvm_mo_regen\n", path);
			exit(1);
		}
		fclose(f);
		free(old);
	} else {
		emit(path, buf, len);
	}
	free(buf);
}

static void w_server(FILE *o, const void *a) { gen_server_header(o, a); }
static void w_user(FILE *o, const void *a) { gen_user_header(o, a); }
static void w_native(FILE *o, const void *a) { (void)a; gen_native_header(o); }
static void w_source(FILE *o, const void *a) { (void)a; gen_source(o); }
static void w_weak(FILE *o, const void *a) { (void)a; gen_weak(o); }
static void w_man(FILE *o, const void *a) { gen_man(o, a); }

static char *
join(const char *a, const char *b, const char *c)
{
	char *s = NULL;

	append(&s, a);
	append(&s, b);
	append(&s, c);
	return s;
}

static void
write_headers(const char *dir, const char *check)
{
	char *p;

	for (int s = 0; s < nss; s++) {
		if (subsystems[s].server_header) {
			produce(p = join(dir, "/", subsystems[s].server_header), w_server, &subsystems[s], check);
			free(p);
		}
		if (subsystems[s].user_header) {
			produce(p = join(dir, "/", subsystems[s].user_header), w_user, &subsystems[s], check);
			free(p);
		}
	}
	produce(p = join(dir, "/", native_header), w_native, NULL, check);
	free(p);
}

/* A page that only sources another one (for the other names it documents). */
static const char *so_target;

static void
w_so(FILE *o, const void *a)
{
	(void)a;
	fprintf(o, ".so man3/%s.3\n", so_target);
}

static void
man_so(const char *dir, const char *name, const char *target, const char *check)
{
	char *d = join(dir, "/", name), *p = join(d, ".3", "");

	so_target = target;
	produce(p, w_so, NULL, check);
	free(p);
	free(d);
}

/* The page of a Mach demultiplexer (and its seqnos_ form). */
static void
w_demux(FILE *o, const void *arg)
{
	const struct subsystem *ss = arg;
	char *u = upper(ss->demux);
	bool first = true;

	fprintf(o, ".\\\" Generated by tools/mig/mvm-mig.c from defs/memory_object.mdefs; do not edit.\n");
	fprintf(o, ".TH %s 3 \"\" \"machvm\" \"machvm Programmer's Manual\"\n", u);
	fprintf(o, ".SH NAME\n%s, seqnos_%s \\- demultiplex %s requests to a memory manager's routines\n",
	    ss->demux, ss->demux, ss->name);
	fprintf(o, ".SH SYNOPSIS\n.nf\n.B #include <%s>\n.PP\n", ss->server_header);
	fprintf(o, "boolean_t %s(mach_msg_header_t *in, mach_msg_header_t *out);\n", ss->demux);
	fprintf(o, "boolean_t seqnos_%s(mach_msg_header_t *in, mach_msg_header_t *out);\n.fi\n", ss->demux);
	fprintf(o, ".SH DESCRIPTION\n.PP\n");
	fprintf(o, "These are the demultiplexers a memory manager passes to mach_msg_server(3).\n");
	fprintf(o, "Each takes a received request of the %s interface (ids %d to %d),\n", ss->name,
	    ss->base, ss->base + ss->nroutines - 1);
	fprintf(o, "checks it strictly (size, complex bit, and every type descriptor and port type),\n");
	fprintf(o, "and calls the program's routine of the same name;\n");
	fprintf(o, "seqnos_%s calls the seqnos_ routines, which also receive the message's sequence number.\n", ss->demux);
	fprintf(o, "The reply header follows MIG's conventions: the request's reply port and its type, id + 100, RetCode.\n");
	fprintf(o, ".PP\nlibmachvm defines every routine as a weak symbol that answers MIG_BAD_ID,\n");
	fprintf(o, "so a program defines only the routines it serves.\n");
	fprintf(o, "The ops-table form, for programs that serve several kinds of objects, is %s(3).\n", ss->ops_demux);
	fprintf(o, ".PP\nRoutines served:\n.RS\n");
	for (int i = 0; i < nrt; i++)
		if (routines[i].ss == ss)
			fprintf(o, ".br\n%d %s(3)\n", routines[i].id, routines[i].name);
	fprintf(o, ".RE\n.SH RETURN VALUES\n");
	fprintf(o, "FALSE, with RetCode MIG_BAD_ID, for an id outside the interface; otherwise TRUE\n");
	fprintf(o, "with RetCode MIG_BAD_ARGUMENTS for a malformed request (no routine is called),\n");
	fprintf(o, "or the routine's result.\n");
	fprintf(o, "Any RetCode but KERN_SUCCESS and MIG_NO_REPLY makes mach_msg_server destroy the request.\n");
	fprintf(o, ".SH SEE ALSO\n");
	for (int i = 0; i < nrt; i++)
		if (routines[i].ss == ss) {
			fprintf(o, "%s.BR %s (3)", first ? "" : ",\n", routines[i].name);
			first = false;
		}
	fprintf(o, ",\n.BR %s (3),\n.BR mach_msg_server (3)\n", ss->ops_demux);
	free(u);
}

/* The page of an ops-table demultiplexer, listing the table's members. */
static void
w_ops(FILE *o, const void *arg)
{
	const struct subsystem *ss = arg;
	char *u = upper(ss->ops_demux);

	fprintf(o, ".\\\" Generated by tools/mig/mvm-mig.c from defs/memory_object.mdefs; do not edit.\n");
	fprintf(o, ".TH %s 3 \"\" \"machvm\" \"machvm Programmer's Manual\"\n", u);
	fprintf(o, ".SH NAME\n%s \\- demultiplex memory object requests to an ops table\n", ss->ops_demux);
	fprintf(o, ".SH SYNOPSIS\n.nf\n.B #include <machvm/memory_object.h>\n.PP\n");
	fprintf(o, "boolean_t %s(const struct %s *ops, void *ctx,\n", ss->ops_demux, ss->ops_struct);
	fprintf(o, "    mach_msg_header_t *in, mach_msg_header_t *out);\n.PP\n");
	fprintf(o, "struct %s {\n    unsigned version;    /* MVM_MEMORY_OBJECT_OPS_VERSION */\n", ss->ops_struct);
	for (int i = 0; i < nrt; i++) {
		const struct routine *r = &routines[i];
		char *t;

		if (r->ss->ops_struct == NULL || strcmp(r->ss->ops_struct, ss->ops_struct) != 0)
			continue;
		t = fn_type(ss, r);
		fprintf(o, "    %s *%s;\n", t, r->op);
		free(t);
	}
	fprintf(o, "};\n.fi\n.SH DESCRIPTION\n.PP\n");
	fprintf(o, "%s checks a received request as the Mach demultiplexers do and calls the\n", ss->ops_demux);
	fprintf(o, "member of ops for its id as member(ctx, request port, seqno, arguments...),\n");
	fprintf(o, "with the arguments of the Mach routine (see each routine's page).\n");
	fprintf(o, "A NULL member, or a table whose version is 0, answers MIG_BAD_ID.\n");
	fprintf(o, "Tables are append-only: set version to MVM_MEMORY_OBJECT_OPS_VERSION and use designated initializers.\n");
	if (ss->kernel_sends) {
		fprintf(o, ".PP\nmvm_memory_object_register(3) maps ports to tables and contexts for a server loop\n");
		fprintf(o, "that serves a port set.\n");
	} else {
		fprintf(o, ".PP\nThis is the kernel's side of the calls a manager makes on a control port; the\n");
		fprintf(o, "kernel lives in the same process, so it leaves the Mach names to the manager's stubs.\n");
	}
	fprintf(o, ".SH RETURN VALUES\n");
	fprintf(o, "FALSE, with RetCode MIG_BAD_ID, for an unknown id or a NULL ops; otherwise TRUE\n");
	fprintf(o, "with RetCode MIG_BAD_ARGUMENTS for a malformed request (no member is called),\n");
	fprintf(o, "or the member's result; a routine's reply is filled in when it succeeds.\n");
	fprintf(o, ".SH SEE ALSO\n.BR mach_msg_server (3)%s\n",
	    ss->kernel_sends ? ",\n.BR memory_object_server (3),\n.BR mvm_memory_object_register (3)" : "");
	free(u);
}

static void
write_man(const char *dir, const char *check)
{
	for (int i = 0; i < nrt; i++) {
		const struct routine *r = &routines[i];
		char *d = join(dir, "/", r->name), *p;

		produce(p = join(d, ".3", ""), w_man, r, check);
		free(p);
		free(d);
		if (r->ss->kernel_sends) {
			char *sq = join("seqnos_", r->name, ""), *sn = sender_name(r);

			man_so(dir, sq, r->name, check);
			man_so(dir, sn, r->name, check);
			free(sq);
			free(sn);
		}
	}
	for (int s = 0; s < nss; s++) {
		const struct subsystem *ss = &subsystems[s];
		char *d, *p;

		if (ss->demux != NULL) {
			char *sq = join("seqnos_", ss->demux, "");

			d = join(dir, "/", ss->demux);
			produce(p = join(d, ".3", ""), w_demux, ss, check);
			free(p);
			free(d);
			man_so(dir, sq, ss->demux, check);
			free(sq);
		}
		if (ss->ops_struct != NULL && !ops_seen_before(s)) {
			d = join(dir, "/", ss->ops_demux);
			produce(p = join(d, ".3", ""), w_ops, ss, check);
			free(p);
			free(d);
		}
	}
}

int
main(int argc, char **argv)
{
	char *p;

	if (argc < 4) {
		fprintf(stderr, "usage: mvm-mig DEFS --sources DIR | --headers DIR | --man DIR"
		    " | --check INCLUDE-DIR MAN-DIR\n");
		return 2;
	}
	parse(argv[1]);
	if (strcmp(argv[2], "--sources") == 0) {
		produce(p = join(argv[3], "/", source_name), w_source, NULL, NULL);
		free(p);
		produce(p = join(argv[3], "/", weak_name), w_weak, NULL, NULL);
		free(p);
	} else if (strcmp(argv[2], "--headers") == 0) {
		write_headers(argv[3], NULL);
	} else if (strcmp(argv[2], "--man") == 0) {
		write_man(argv[3], NULL);
	} else if (strcmp(argv[2], "--check") == 0 && argc == 5) {
		write_headers(argv[3], "");
		write_man(argv[4], "");
	} else {
		fprintf(stderr, "mvm-mig: bad mode %s\n", argv[2]);
		return 2;
	}
	return 0;
}
