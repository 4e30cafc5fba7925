/* fuzz-cbor: CBOR heads, whole items and sequences walked within both limit sets with a
 * visitor (gossip_cbor_scan), the strict cursor (gossip_cur_next), and diagnostic
 * notation (gossip_diag, with and without embedded COSE) printed to /dev/null. */
#include "fuzz.h"

/* The visitor checks what gossip.h promises of the walk: depths nest, a parent at every
 * depth but the top, indexes count up within a container. */
struct walk {
	const struct gossip_limits *lim;
	unsigned open;  /* containers opened and not closed */
	uint64_t items;
};

static void w_item(void *ctx, const struct gossip_ev *ev, unsigned depth,
                   const struct gossip_ev *parent, uint64_t index)
{
	struct walk *w = ctx;
	if (depth > w->lim->max_depth || (depth == 0) != (parent == NULL) || depth != w->open ||
	    (!parent && index) || ev->type == GOSSIP_EV_BREAK)
		abort();
	if ((ev->type == GOSSIP_EV_BSTR || ev->type == GOSSIP_EV_TSTR) && ev->len && !ev->data)
		abort();
	w->items++;
	switch (ev->type) {
	case GOSSIP_EV_BSTR_INDEF: case GOSSIP_EV_TSTR_INDEF: case GOSSIP_EV_ARRAY_INDEF:
	case GOSSIP_EV_MAP_INDEF: case GOSSIP_EV_TAG:
		w->open++;
		break;
	case GOSSIP_EV_ARRAY: case GOSSIP_EV_MAP:
		w->open += ev->u > 0;
		break;
	default:
		break;
	}
}

static void w_close(void *ctx, const struct gossip_ev *opener, unsigned depth)
{
	struct walk *w = ctx;
	(void)opener;
	if (w->open == 0 || depth != w->open - 1)
		abort();
	w->open--;
}

static void walk_all(const uint8_t *p, size_t n, const struct gossip_limits *lim)
{
	/* The input as a CBOR sequence: item after item while they are whole. */
	size_t at = 0, len;
	while (at < n) {
		struct walk w = {lim, 0, 0};
		struct gossip_visitor v = {w_item, w_close, &w};
		int s = gossip_cbor_scan(p + at, n - at, lim, &v, &len);
		if (len > n - at)
			abort();
		if (s != GOSSIP_SCAN_OK)
			break;
		if (len == 0 || w.open != 0 || w.items > lim->max_items || len > lim->max_size)
			abort();
		/* A whole item prints (diag walks it again with the larger limits). */
		if (gossip_diag(fuzz_devnull(), p + at, len, 0) < 0 ||
		    gossip_diag(fuzz_devnull(), p + at, len, 1) < 0)
			abort();
		at += len;
	}
	/* And without a visitor, as the reader scans. */
	(void)gossip_cbor_scan(p, n, lim, NULL, &len);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_sodium();
	fuzz_devnull();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_reset();
	walk_all(data, size, &gossip_msg_limits);
	walk_all(data, size, &gossip_any_limits);
	/* Whatever the input is, diag either prints one item or says why not. */
	(void)gossip_diag(fuzz_devnull(), data, size, 1);

	/* The strict cursor over the heads, as the message and member decoders use it. */
	struct gossip_cur c = {data, size, 0};
	struct gossip_ev ev;
	while (c.pos < c.n && gossip_cur_next(&c, &ev, "fuzz") == 0)
		if (c.pos > c.n)
			abort();
	return 0;
}
