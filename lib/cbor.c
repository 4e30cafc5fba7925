/* cbor.c: CBOR on top of libcbor's streaming decoder and encoders: one head at a time,
 * whole items walked within limits, CBOR sequences read from a descriptor. */
#include "gossip.h"

#include <cbor.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const struct gossip_limits gossip_msg_limits = {GOSSIP_MSG_MAX, 8, 64};
const struct gossip_limits gossip_any_limits = {16u << 20, 128, 1u << 20};

/* ---- one head ---- */

struct evctx {
	struct gossip_ev *ev;
	const uint8_t *lo, *hi;  /* the input, to check that strings lie inside it */
	int bad;
};

#define EV(c) (((struct evctx *)(c))->ev)
static void set(void *c, enum gossip_ev_type t, uint64_t u, int width)
{
	EV(c)->type = t;
	EV(c)->u = u;
	EV(c)->width = width;
}
static void on_u8(void *c, uint8_t v) { set(c, GOSSIP_EV_UINT, v, v < 24 ? 0 : 1); }
static void on_u16(void *c, uint16_t v) { set(c, GOSSIP_EV_UINT, v, 2); }
static void on_u32(void *c, uint32_t v) { set(c, GOSSIP_EV_UINT, v, 4); }
static void on_u64(void *c, uint64_t v) { set(c, GOSSIP_EV_UINT, v, 8); }
static void on_n8(void *c, uint8_t v) { set(c, GOSSIP_EV_NEGINT, v, v < 24 ? 0 : 1); }
static void on_n16(void *c, uint16_t v) { set(c, GOSSIP_EV_NEGINT, v, 2); }
static void on_n32(void *c, uint32_t v) { set(c, GOSSIP_EV_NEGINT, v, 4); }
static void on_n64(void *c, uint64_t v) { set(c, GOSSIP_EV_NEGINT, v, 8); }
static void on_str(void *c, enum gossip_ev_type t, cbor_data d, size_t n)
{
	struct evctx *x = c;
	set(c, t, n, 0);
	x->ev->data = d;
	x->ev->len = n;
	if (d < x->lo || d > x->hi || n > (size_t)(x->hi - d))
		x->bad = 1;
}
static void on_bstr(void *c, cbor_data d, size_t n) { on_str(c, GOSSIP_EV_BSTR, d, n); }
static void on_tstr(void *c, cbor_data d, size_t n) { on_str(c, GOSSIP_EV_TSTR, d, n); }
static void on_bstr_indef(void *c) { set(c, GOSSIP_EV_BSTR_INDEF, 0, 0); }
static void on_tstr_indef(void *c) { set(c, GOSSIP_EV_TSTR_INDEF, 0, 0); }
static void on_array(void *c, size_t n) { set(c, GOSSIP_EV_ARRAY, n, 0); }
static void on_array_indef(void *c) { set(c, GOSSIP_EV_ARRAY_INDEF, 0, 0); }
static void on_map(void *c, size_t n) { set(c, GOSSIP_EV_MAP, n, 0); }
static void on_map_indef(void *c) { set(c, GOSSIP_EV_MAP_INDEF, 0, 0); }
static void on_tag(void *c, uint64_t v) { set(c, GOSSIP_EV_TAG, v, 0); }
static void on_f2(void *c, float f) { set(c, GOSSIP_EV_FLOAT, 0, 2); EV(c)->f = f; }
static void on_f4(void *c, float f) { set(c, GOSSIP_EV_FLOAT, 0, 4); EV(c)->f = f; }
static void on_f8(void *c, double f) { set(c, GOSSIP_EV_FLOAT, 0, 8); EV(c)->f = f; }
static void on_undef(void *c) { set(c, GOSSIP_EV_UNDEF, 0, 0); }
static void on_null(void *c) { set(c, GOSSIP_EV_NULL, 0, 0); }
static void on_bool(void *c, bool b) { set(c, GOSSIP_EV_BOOL, b, 0); }
static void on_break(void *c) { set(c, GOSSIP_EV_BREAK, 0, 0); }

static const struct cbor_callbacks callbacks = {
	.uint8 = on_u8, .uint16 = on_u16, .uint32 = on_u32, .uint64 = on_u64,
	.negint8 = on_n8, .negint16 = on_n16, .negint32 = on_n32, .negint64 = on_n64,
	.byte_string = on_bstr, .byte_string_start = on_bstr_indef,
	.string = on_tstr, .string_start = on_tstr_indef,
	.array_start = on_array, .indef_array_start = on_array_indef,
	.map_start = on_map, .indef_map_start = on_map_indef,
	.tag = on_tag, .float2 = on_f2, .float4 = on_f4, .float8 = on_f8,
	.undefined = on_undef, .null = on_null, .boolean = on_bool, .indef_break = on_break,
};

long gossip_cbor_event(const uint8_t *p, size_t n, struct gossip_ev *ev)
{
	struct evctx x = {ev, p, p + n, 0};
	memset(ev, 0, sizeof *ev);
	if (n == 0)
		return 0;
	struct cbor_decoder_result r = cbor_stream_decode(p, n, &callbacks, &x);
	if (r.status == CBOR_DECODER_FINISHED)
		return x.bad || r.read == 0 || r.read > n ? -1 : (long)r.read;
	if (r.status == CBOR_DECODER_NEDATA) {
		ev->u = r.required;  /* at least this many bytes from p (a string's length) */
		return 0;
	}
	/* libcbor 0.8 rejects two kinds of one-byte heads that RFC 8949 allows: tags 6 to 20
	 * (0xc6..0xd4; COSE_Sign1's tag 18 is 0xd2) and the unassigned simple values
	 * (0xe0..0xf3, and 0xf8 with a following byte of 32 or more; below 32 is not
	 * well-formed). The value of each is in its low five bits or its one following
	 * byte; these are the only heads decoded here. */
	if (p[0] >= 0xc6 && p[0] <= 0xd4) {
		set(&x, GOSSIP_EV_TAG, p[0] & 0x1f, 0);
		return 1;
	}
	if (p[0] >= 0xe0 && p[0] <= 0xf3) {
		set(&x, GOSSIP_EV_SIMPLE, p[0] & 0x1f, 0);
		return 1;
	}
	if (p[0] == 0xf8) {
		if (n < 2)
			return 0;
		if (p[1] < 32)
			return -1;
		set(&x, GOSSIP_EV_SIMPLE, p[1], 1);
		return 2;
	}
	return -1;
}

/* ---- whole items ---- */

struct gossip_scan_frame {
	struct gossip_ev opener;  /* its data points into the buffer of the walk that began it */
	uint64_t left;  /* items still due in a definite container */
	uint64_t index;  /* items seen so far */
	int indef;
};

static int is_container(const struct gossip_ev *ev)
{
	switch (ev->type) {
	case GOSSIP_EV_BSTR_INDEF: case GOSSIP_EV_TSTR_INDEF: case GOSSIP_EV_ARRAY_INDEF:
	case GOSSIP_EV_MAP_INDEF: case GOSSIP_EV_TAG:
		return 1;
	case GOSSIP_EV_ARRAY: case GOSSIP_EV_MAP:
		return ev->u > 0;
	default:
		return 0;
	}
}

/* Walk on from s->pos (whole heads and strings before it, open containers in s->st, at
 * least lim->max_depth + 1 of them). MORE leaves s->pos at the head that stopped short and
 * sets *len to what the item needs at least; OK and BAD set *len as gossip_cbor_scan. */
static int walk(struct gossip_scan *s, const uint8_t *p, size_t n, const struct gossip_limits *lim,
                const struct gossip_visitor *v, size_t *len)
{
	struct gossip_scan_frame *st = s->st;
	unsigned depth = s->depth;
	uint64_t items = s->items;
	size_t pos = s->pos;
	int ret = GOSSIP_SCAN_BAD;
	for (;;) {
		struct gossip_ev ev;
		if (pos >= lim->max_size && pos < n) {
			gossip_seterr("item is larger than %zu bytes", lim->max_size);
			break;
		}
		long k = gossip_cbor_event(p + pos, n - pos, &ev);
		if (k == 0) {
			/* Too large already when the head says so: a peer that declares a huge
			 * string and then stalls is refused now, not at its time limit. */
			if (n >= lim->max_size || ev.u > lim->max_size - pos) {
				gossip_seterr("item is larger than %zu bytes", lim->max_size);
				break;
			}
			s->depth = depth, s->items = items, s->pos = pos;
			/* What the item needs at least: up to the end of the head or string that
			 * stopped short (ev.u counts from it), and one more byte than there is. */
			*len = pos + ev.u > n ? pos + ev.u : n + 1;
			return GOSSIP_SCAN_MORE;
		}
		if (k < 0) {
			gossip_seterr("not well-formed CBOR (byte 0x%02x)", p[pos]);
			break;
		}
		struct gossip_scan_frame *top = depth ? &st[depth - 1] : NULL;
		if (ev.type == GOSSIP_EV_BREAK) {
			if (!top || !top->indef) {
				gossip_seterr("not well-formed CBOR (break outside an indefinite item)");
				break;
			}
			if (top->opener.type == GOSSIP_EV_MAP_INDEF && top->index % 2) {
				gossip_seterr("not well-formed CBOR (map without a value for its last key)");
				break;
			}
		} else {
			if (++items > lim->max_items) {
				gossip_seterr("item has more than %llu data items",
				              (unsigned long long)lim->max_items);
				break;
			}
			if (top && (top->opener.type == GOSSIP_EV_BSTR_INDEF ||
			            top->opener.type == GOSSIP_EV_TSTR_INDEF) &&
			    ev.type != (top->opener.type == GOSSIP_EV_BSTR_INDEF ? GOSSIP_EV_BSTR
			                                                         : GOSSIP_EV_TSTR)) {
				gossip_seterr("not well-formed CBOR (bad chunk in an indefinite string)");
				break;
			}
			if ((ev.type == GOSSIP_EV_ARRAY && ev.u > lim->max_items) ||
			    (ev.type == GOSSIP_EV_MAP && ev.u > lim->max_items / 2)) {
				gossip_seterr("item has more than %llu data items",
				              (unsigned long long)lim->max_items);
				break;
			}
			if (v && v->item)
				v->item(v->ctx, &ev, depth, top ? &top->opener : NULL,
				        top ? top->index : 0);
		}
		if (ev.type != GOSSIP_EV_BREAK && is_container(&ev) && depth >= lim->max_depth) {
			gossip_seterr("item is nested deeper than %u levels", lim->max_depth);
			break;
		}
		pos += (size_t)k;
		if (ev.type != GOSSIP_EV_BREAK && is_container(&ev)) {
			struct gossip_scan_frame *f = &st[depth++];
			f->opener = ev;
			f->index = 0;
			f->indef = ev.type != GOSSIP_EV_ARRAY && ev.type != GOSSIP_EV_MAP &&
			           ev.type != GOSSIP_EV_TAG;
			f->left = ev.type == GOSSIP_EV_TAG ? 1 : ev.type == GOSSIP_EV_MAP ? 2 * ev.u : ev.u;
			continue;
		}
		/* An item is complete: count it in its parents, closing the ones it fills. */
		if (ev.type == GOSSIP_EV_BREAK) {
			depth--;
			if (v && v->close)
				v->close(v->ctx, &st[depth].opener, depth);
		}
		while (depth) {
			struct gossip_scan_frame *f = &st[depth - 1];
			f->index++;
			if (f->indef || --f->left > 0)
				break;
			depth--;
			if (v && v->close)
				v->close(v->ctx, &f->opener, depth);
		}
		if (depth == 0) {
			if (pos > lim->max_size)
				gossip_seterr("item is larger than %zu bytes", lim->max_size);
			else
				ret = GOSSIP_SCAN_OK;
			break;
		}
	}
	*len = pos;
	return ret;
}

int gossip_cbor_scan(const uint8_t *p, size_t n, const struct gossip_limits *lim,
                     const struct gossip_visitor *v, size_t *len)
{
	struct gossip_scan_frame small[16];
	struct gossip_scan s = {small, 0, 16, 0, 0, 0};
	if (lim->max_depth + 1 > s.cap) {
		s.cap = lim->max_depth + 1;
		if (!(s.st = malloc(s.cap * sizeof *s.st))) {
			gossip_seterr("out of memory");
			*len = 0;
			return GOSSIP_SCAN_BAD;
		}
	}
	int r = walk(&s, p, n, lim, v, len);
	if (s.st != small)
		free(s.st);
	return r;
}

int gossip_scan_next(struct gossip_scan *s, const uint8_t *p, size_t n, const struct gossip_limits *lim,
                     size_t *len)
{
	if (n < s->need) {
		*len = s->need;
		return GOSSIP_SCAN_MORE;
	}
	if (s->cap < lim->max_depth + 1) {
		struct gossip_scan_frame *st = realloc(s->st, (lim->max_depth + 1) * sizeof *st);
		if (!st) {
			gossip_seterr("out of memory");
			*len = 0;
			return GOSSIP_SCAN_BAD;
		}
		s->st = st;
		s->cap = lim->max_depth + 1;
	}
	int r = walk(s, p, n, lim, NULL, len);
	if (r == GOSSIP_SCAN_MORE)
		s->need = *len;
	else
		gossip_scan_reset(s);
	return r;
}

void gossip_scan_reset(struct gossip_scan *s)
{
	s->depth = 0;
	s->items = 0;
	s->pos = 0;
	s->need = 0;
}

void gossip_scan_free(struct gossip_scan *s)
{
	free(s->st);
	memset(s, 0, sizeof *s);
}

/* ---- sequences ---- */

void gossip_reader_init(struct gossip_reader *r, int fd, const char *name,
                        const struct gossip_limits *lim)
{
	memset(r, 0, sizeof *r);
	r->fd = fd;
	r->name = name;
	r->lim = *lim;
	r->wake_fd = -1;
}

int gossip_reader_next(struct gossip_reader *r, const uint8_t **item, size_t *len,
                       uint64_t *off)
{
	uint64_t until = 0;  /* the end of this wait (timeout_ms): a signal does not restart it */
	/* Past the deadline nothing more is taken, buffered or not: a peer that sends faster
	 * than its items are handled would otherwise never meet it. */
	if (r->deadline && gossip_mono_ms() >= r->deadline) {
		gossip_seterr("%s: timed out: the time limit ran out", r->name);
		return -1;
	}
	for (;;) {
		size_t k;
		if (r->ready) {
			/* gossip_reader_ready has scanned this item already. */
			*item = r->buf + r->start;
			*len = r->ready;
			*off = r->base + r->start;
			r->start += r->ready;
			r->ready = 0;
			return 1;
		}
		if (r->end > r->start && r->end - r->start >= r->scan.need) {
			/* Walked on from where the last scan stopped, once the bytes it found
			 * missing are here: a peer that trickles an item a byte at a time costs
			 * one walk of it, not one per byte. */
			int s = gossip_scan_next(&r->scan, r->buf + r->start, r->end - r->start, &r->lim, &k);
			if (s == GOSSIP_SCAN_OK) {
				*item = r->buf + r->start;
				*len = k;
				*off = r->base + r->start;
				r->start += k;
				return 1;
			}
			if (s == GOSSIP_SCAN_BAD) {
				char why[512];
				snprintf(why, sizeof why, "%s", gossip_error());
				gossip_seterr("%s: offset %llu: %s", r->name,
				              (unsigned long long)(r->base + r->start + k), why);
				return -1;
			}
			if (r->eof) {
				gossip_seterr("%s: offset %llu: truncated item (%zu bytes, then end of input)",
				              r->name, (unsigned long long)(r->base + r->start),
				              r->end - r->start);
				return -1;
			}
		} else if (r->eof && r->end > r->start) {
			gossip_seterr("%s: offset %llu: truncated item (%zu bytes, then end of input)", r->name,
			              (unsigned long long)(r->base + r->start), r->end - r->start);
			return -1;
		} else if (r->eof)
			return 0;
		/* Make room: move the partial item to the front, grow up to the limit. */
		if (r->start) {
			memmove(r->buf, r->buf + r->start, r->end - r->start);
			r->base += r->start;
			r->end -= r->start;
			r->start = 0;
		}
		if (r->end == r->cap) {
			size_t cap = r->cap ? r->cap * 2 : 65536;
			if (cap > r->lim.max_size + 65536)
				cap = r->lim.max_size + 65536;
			uint8_t *b = cap > r->cap ? realloc(r->buf, cap) : NULL;
			if (!b) {
				gossip_seterr("%s: out of memory", r->name);
				return -1;
			}
			r->buf = b;
			r->cap = cap;
		}
		int wait = r->timeout_ms > 0 ? r->timeout_ms : -1, late = 0;
		if (wait > 0) {
			uint64_t now = gossip_mono_ms();
			if (!until)
				until = now + (uint64_t)wait;
			wait = until > now ? (int)(until - now) : 0;
		}
		if (r->deadline) {
			/* The deadline bounds the whole read, not each wait: a byte a second
			 * must not hold the reader for ever. */
			uint64_t now = gossip_mono_ms();
			uint64_t left = now < r->deadline ? r->deadline - now : 0;
			if (wait < 0 || left < (uint64_t)wait)
				wait = (int)(left > 86400000 ? 86400000 : left), late = 1;
		}
		if (wait >= 0 || r->wake_fd >= 0) {
			struct pollfd pfd[2] = {{r->fd, POLLIN, 0}, {r->wake_fd, POLLIN, 0}};
			/* Set since the caller last looked (a signal just before the wait). */
			if (r->wake_flag && *r->wake_flag) {
				gossip_seterr("%s: timed out: woken", r->name);
				return -1;
			}
			int pr = poll(pfd, r->wake_fd >= 0 ? 2 : 1, wait);
			if (pr < 0 && errno == EINTR && r->wake_flag && *r->wake_flag) {
				gossip_seterr("%s: timed out: woken", r->name);
				return -1;
			}
			if (pr < 0 && errno == EINTR)
				continue;  /* for what is left of the wait */
			if (pr > 0 && !pfd[0].revents) {
				gossip_seterr("%s: timed out: woken", r->name);
				return -1;
			}
			if (pr == 0 && late) {
				gossip_seterr("%s: timed out: the time limit ran out", r->name);
				return -1;
			}
			if (pr == 0) {
				gossip_seterr("%s: timed out after %d s with nothing to read", r->name,
				              r->timeout_ms / 1000);
				return -1;
			}
		}
		ssize_t got = read(r->fd, r->buf + r->end, r->cap - r->end);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			gossip_seterr("%s: cannot read: %s", r->name, strerror(errno));
			return -1;
		}
		if (got == 0)
			r->eof = 1;
		until = 0;  /* bytes came: the next wait is a new one */
		r->end += (size_t)got;
		r->bytes += (uint64_t)got;
	}
}

int gossip_reader_ready(struct gossip_reader *r)
{
	size_t k;
	if (!r->ready && r->end > r->start &&
	    gossip_scan_next(&r->scan, r->buf + r->start, r->end - r->start, &r->lim, &k) == GOSSIP_SCAN_OK)
		r->ready = k;
	return r->ready > 0;
}

void gossip_reader_free(struct gossip_reader *r)
{
	free(r->buf);
	r->buf = NULL;
	gossip_scan_free(&r->scan);
}

/* ---- strict cursors ---- */

static size_t head_size(uint64_t u)
{
	return u < 24 ? 1 : u <= 0xff ? 2 : u <= 0xffff ? 3 : u <= 0xffffffff ? 5 : 9;
}

int gossip_cur_next(struct gossip_cur *c, struct gossip_ev *ev, const char *what)
{
	if (c->pos >= c->n) {  /* also keeps an empty cursor's NULL p out of arithmetic */
		gossip_seterr("truncated %s", what);
		return -1;
	}
	long k = gossip_cbor_event(c->p + c->pos, c->n - c->pos, ev);
	if (k == 0) {
		gossip_seterr("truncated %s", what);
		return -1;
	}
	if (k < 0) {
		gossip_seterr("not well-formed CBOR in %s", what);
		return -1;
	}
	size_t want;
	switch (ev->type) {
	case GOSSIP_EV_UINT: case GOSSIP_EV_NEGINT: case GOSSIP_EV_ARRAY: case GOSSIP_EV_MAP:
	case GOSSIP_EV_TAG:
		want = head_size(ev->u);
		break;
	case GOSSIP_EV_BSTR: case GOSSIP_EV_TSTR:
		want = head_size(ev->len) + ev->len;
		break;
	default:
		want = (size_t)k;
	}
	if ((size_t)k != want) {
		gossip_seterr("%s is not deterministically encoded (a longer head than needed)", what);
		return -1;
	}
	c->pos += (size_t)k;
	return 0;
}

int gossip_cur_expect(struct gossip_cur *c, enum gossip_ev_type type, struct gossip_ev *ev,
                      const char *what)
{
	if (gossip_cur_next(c, ev, what) < 0)
		return -1;
	if (ev->type != type) {
		gossip_seterr("%s has the wrong type", what);
		return -1;
	}
	return 0;
}

/* ---- encoding ---- */

int gossip_cbor_head(struct gossip_buf *b, int major, uint64_t arg)
{
	unsigned char h[9];
	size_t k = 0;
	switch (major) {
	case GOSSIP_MT_UINT: k = cbor_encode_uint(arg, h, sizeof h); break;
	case GOSSIP_MT_NEGINT: k = cbor_encode_negint(arg, h, sizeof h); break;
	case GOSSIP_MT_BSTR: k = cbor_encode_bytestring_start(arg, h, sizeof h); break;
	case GOSSIP_MT_TSTR: k = cbor_encode_string_start(arg, h, sizeof h); break;
	case GOSSIP_MT_ARRAY: k = cbor_encode_array_start(arg, h, sizeof h); break;
	case GOSSIP_MT_MAP: k = cbor_encode_map_start(arg, h, sizeof h); break;
	case GOSSIP_MT_TAG: k = cbor_encode_tag(arg, h, sizeof h); break;
	}
	if (k == 0) {
		gossip_seterr("cannot encode CBOR head");
		return -1;
	}
	return gossip_buf_put(b, h, k);
}

int gossip_cbor_str(struct gossip_buf *b, int major, const void *p, size_t n)
{
	if (gossip_cbor_head(b, major, n) < 0)
		return -1;
	return gossip_buf_put(b, p, n);
}
