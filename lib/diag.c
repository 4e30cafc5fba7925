/* diag.c: CBOR diagnostic notation (RFC 8949 §8) for people reading messages by hand. */
#include "gossip.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Add step (+1 or -1) to the last digit of the %e text in e; keep it if it reads back
 * as d. Carries past the first digit are not needed: those cases round-trip without. */
static int nudge(char *e, int step, double d)
{
	char t[40];
	strcpy(t, e);
	char *x = strchr(t, 'e');
	char *q = x - 1;
	for (; q >= t && (*q == '.' || (step > 0 ? *q == '9' : *q == '0')); q--)
		if (*q != '.')
			*q = step > 0 ? '0' : '9';
	if (q < t || *q < '0' || *q > '9' || (q == t + (t[0] == '-') && *q == (step > 0 ? '9' : '1')))
		return 0;
	*q = (char)(*q + step);
	if (strtod(t, NULL) != d)
		return 0;
	strcpy(e, t);
	return 1;
}

void gossip_fmt_double(char *out, double d)
{
	char e[40], digits[24];
	int p, exp10, k = 0;
	if (isnan(d)) {
		strcpy(out, "NaN");
		return;
	}
	if (isinf(d)) {
		strcpy(out, d < 0 ? "-Infinity" : "Infinity");
		return;
	}
	if (d == 0) {
		strcpy(out, signbit(d) ? "-0.0" : "0.0");
		return;
	}
	/* The fewest significant digits that read back as the same double. The correctly
	 * rounded digits can miss where the gap to the next double differs on each side
	 * (at a power of two), so the neighbours in the last digit are tried too. */
	for (p = 1; p <= 17; p++) {
		snprintf(e, sizeof e, "%.*e", p - 1, d);
		if (strtod(e, NULL) == d || nudge(e, 1, d) || nudge(e, -1, d))
			break;
	}
	const char *s = e;
	char *o = out;
	if (*s == '-')
		*o++ = *s++;
	for (; *s && *s != 'e'; s++)
		if (*s != '.')
			digits[k++] = *s;
	digits[k] = 0;
	exp10 = atoi(s + 1);
	while (k > 1 && digits[k - 1] == '0')
		digits[--k] = 0;
	/* ECMAScript Number::toString: n is the position of the decimal point. */
	int n = exp10 + 1;
	if (k <= n && n <= 21) {
		o += sprintf(o, "%s", digits);
		for (int i = k; i < n; i++)
			*o++ = '0';
		strcpy(o, ".0");
	} else if (0 < n && n <= 21) {
		sprintf(o, "%.*s.%s", n, digits, digits + n);
	} else if (-6 < n && n <= 0) {
		o += sprintf(o, "0.");
		for (int i = n; i < 0; i++)
			*o++ = '0';
		strcpy(o, digits);
	} else {
		sprintf(o, "%c.%se%c%d", digits[0], k > 1 ? digits + 1 : "0", n - 1 < 0 ? '-' : '+',
		        abs(n - 1));
	}
}

struct dctx {
	FILE *f;
	int embed;
	const char **closer;  /* per depth */
	uint8_t *cose;  /* per depth: the array of a COSE_Sign1 */
	int bignum_pending;  /* tag 2 or 3 seen, its "N(" not yet printed */
	uint64_t pending_tag;
};

/* Unsigned big-endian bytes as a decimal number (plus one when add1). */
static void put_bignum(FILE *f, const uint8_t *p, size_t n, int add1)
{
	uint8_t v[72];
	char dec[200];
	size_t k = 0, len = n + 1;
	v[0] = 0;
	memcpy(v + 1, p, n);
	for (size_t i = len; add1 && i-- > 0;)
		if (++v[i] != 0)
			break;
	for (;;) {
		unsigned rem = 0;
		int zero = 1;
		for (size_t i = 0; i < len; i++) {
			unsigned cur = rem * 256 + v[i];
			v[i] = (uint8_t)(cur / 10);
			rem = cur % 10;
			if (v[i])
				zero = 0;
		}
		dec[k++] = (char)('0' + rem);
		if (zero)
			break;
	}
	while (k)
		fputc(dec[--k], f);
}

static void flush_tag(struct dctx *c)
{
	if (c->bignum_pending) {
		fprintf(c->f, "%llu(", (unsigned long long)c->pending_tag);
		c->bignum_pending = 0;
	}
}

static int embeddable(const struct gossip_ev *ev)
{
	size_t k;
	return ev->type == GOSSIP_EV_BSTR && ev->len > 0 &&
	       gossip_cbor_scan(ev->data, ev->len, &gossip_any_limits, NULL, &k) == GOSSIP_SCAN_OK &&
	       k == ev->len;
}

static void d_item(void *ctx, const struct gossip_ev *ev, unsigned depth,
                   const struct gossip_ev *parent, uint64_t index)
{
	struct dctx *c = ctx;
	FILE *f = c->f;
	if (parent && parent->type == GOSSIP_EV_TAG && c->bignum_pending) {
		c->bignum_pending = 0;
		if (ev->type == GOSSIP_EV_BSTR && ev->len <= 64) {
			if (c->pending_tag == 3)
				fputc('-', f);
			put_bignum(f, ev->data, ev->len, c->pending_tag == 3);
			c->closer[depth - 1] = "";
			return;
		}
		fprintf(f, "%llu(", (unsigned long long)c->pending_tag);
	}
	if (parent && parent->type != GOSSIP_EV_TAG && index > 0)
		fputs((parent->type == GOSSIP_EV_MAP || parent->type == GOSSIP_EV_MAP_INDEF) && index % 2
		          ? ": " : ", ", f);
	c->cose[depth] = 0;
	switch (ev->type) {
	case GOSSIP_EV_UINT:
		fprintf(f, "%llu", (unsigned long long)ev->u);
		break;
	case GOSSIP_EV_NEGINT:
		if (ev->u == UINT64_MAX)
			fputs("-18446744073709551616", f);
		else
			fprintf(f, "-%llu", (unsigned long long)ev->u + 1);
		break;
	case GOSSIP_EV_BSTR:
		if (c->embed && depth > 0 && c->cose[depth - 1] && (index == 0 || index == 2) &&
		    embeddable(ev)) {
			fputs("<<", f);
			gossip_diag(f, ev->data, ev->len, 0);
			fputs(">>", f);
			break;
		}
		fputs("h'", f);
		for (size_t i = 0; i < ev->len; i++)
			fprintf(f, "%02x", ev->data[i]);
		fputc('\'', f);
		break;
	case GOSSIP_EV_TSTR:
		gossip_put_string(f, ev->data, ev->len, 1);
		break;
	case GOSSIP_EV_BSTR_INDEF:
	case GOSSIP_EV_TSTR_INDEF:
		fputs("(_ ", f);
		c->closer[depth] = ")";
		break;
	case GOSSIP_EV_ARRAY:
		fputs(ev->u ? "[" : "[]", f);
		c->closer[depth] = "]";
		c->cose[depth] = ev->u == 4 && parent && parent->type == GOSSIP_EV_TAG && parent->u == 18;
		break;
	case GOSSIP_EV_ARRAY_INDEF:
		fputs("[_ ", f);
		c->closer[depth] = "]";
		break;
	case GOSSIP_EV_MAP:
		fputs(ev->u ? "{" : "{}", f);
		c->closer[depth] = "}";
		break;
	case GOSSIP_EV_MAP_INDEF:
		fputs("{_ ", f);
		c->closer[depth] = "}";
		break;
	case GOSSIP_EV_TAG:
		c->closer[depth] = ")";
		if (ev->u == 2 || ev->u == 3) {
			c->bignum_pending = 1;
			c->pending_tag = ev->u;
		} else
			fprintf(f, "%llu(", (unsigned long long)ev->u);
		break;
	case GOSSIP_EV_FLOAT: {
		char num[40];
		gossip_fmt_double(num, ev->f);
		fputs(num, f);
		break;
	}
	case GOSSIP_EV_BOOL:
		fputs(ev->u ? "true" : "false", f);
		break;
	case GOSSIP_EV_NULL:
		fputs("null", f);
		break;
	case GOSSIP_EV_UNDEF:
		fputs("undefined", f);
		break;
	case GOSSIP_EV_SIMPLE:
		fprintf(f, "simple(%llu)", (unsigned long long)ev->u);
		break;
	case GOSSIP_EV_BREAK:
		break;
	}
}

static void d_close(void *ctx, const struct gossip_ev *opener, unsigned depth)
{
	struct dctx *c = ctx;
	(void)opener;
	flush_tag(c);
	fputs(c->closer[depth], c->f);
}

int gossip_diag(FILE *f, const uint8_t *p, size_t n, int embed)
{
	size_t k, depth = gossip_any_limits.max_depth + 2;
	struct dctx c = {f, embed, calloc(depth, sizeof(char *)), calloc(depth, 1), 0, 0};
	struct gossip_visitor v = {d_item, d_close, &c};
	int r = -1;
	if (!c.closer || !c.cose)
		gossip_seterr("out of memory");
	else if (gossip_cbor_scan(p, n, &gossip_any_limits, &v, &k) == GOSSIP_SCAN_OK)
		r = 0;
	else
		gossip_seterr("not one well-formed CBOR item");
	free(c.closer);
	free(c.cose);
	return r;
}
