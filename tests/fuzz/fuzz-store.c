/* fuzz-store: a store as gossip_store_open finds it after a crash or a hand edit: the
 * input is DIR/store, then, after a line "#watermarks#", DIR/watermarks (no marker: no
 * watermarks file). The store is indexed (a torn tail cut), then summarized
 * (gossip_store_summary) and walked (gossip_store_each), as digest, export and syncs do.
 * The store's warning about a cut tail goes to stderr: here stdio's stderr is /dev/null
 * (libFuzzer and the sanitizers write to descriptor 2 themselves). */
#include "fuzz.h"

#define MARKER "\n#watermarks#\n"

static const char *dir;

struct walk {
	uint64_t n, last_off;
};

static int each(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	struct walk *w = ctx;
	struct gossip_msg m;
	/* Only messages that decode are indexed; the walk is in store order. */
	if (gossip_msg_decode(p, e->len, &m) < 0 || gossip_msg_is_news(&m) ||
	    (w->n && e->off <= w->last_off) || m.version != e->version || m.type != e->type)
		abort();
	w->n++;
	w->last_off = e->off;
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_sodium();
	dir = fuzz_dir("store");
	stderr = fuzz_devnull();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_reset();
	const uint8_t *mark = memmem(data, size, MARKER, sizeof MARKER - 1);
	size_t storelen = mark ? (size_t)(mark - data) : size;
	fuzz_file("store", data, storelen, 0600);
	if (mark) {
		const uint8_t *wm = mark + sizeof MARKER - 1;
		fuzz_file("watermarks", wm, size - (size_t)(wm - data), 0600);
	} else
		fuzz_file("watermarks", NULL, 0, 0);

	struct gossip_store *st = gossip_store_open(dir, NULL);
	if (!st)
		return 0;
	uint8_t root[16];
	uint64_t count;
	struct walk w = {0, 0};
	if (gossip_store_summary(st, root, &count) < 0 || gossip_store_each(st, 0, each, &w) != 0 ||
	    w.n != count)
		abort();
	gossip_store_close(st);
	return 0;
}
