/* fuzz-events: the membership event log (DIR/events, written by gossip-peers observe and
 * followed by its handlers) read by gossip_event_reader from a scratch directory holding
 * the input: every event from the start (each one's strings must be terminated), then a
 * second pass that must find nothing new. Then what observe does next: one event appended
 * with gossip_event_append, about a member made from the last event read (its name, its
 * addresses and tags split at the commas), which a reader started at the old end must
 * read back exactly, and alone; the first reader reads on past it (after a torn tail, if
 * the input has one). */
#include "fuzz.h"

static const char *dir;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_sodium();
	dir = fuzz_dir("events");
	return 0;
}

static int terminated(const char *s, size_t n)
{
	return memchr(s, 0, n) != NULL;
}

static void check(const struct gossip_event *e)
{
	if (!terminated(e->event, sizeof e->event) || !terminated(e->name, sizeof e->name) ||
	    !terminated(e->state, sizeof e->state) || !terminated(e->id, sizeof e->id) ||
	    !terminated(e->addrs, sizeof e->addrs) || !terminated(e->tags, sizeof e->tags))
		abort();
}

/* Split s at the commas into at most max strings of less than len bytes each. */
static int split(const char *s, char *out, size_t len, int max)
{
	int k = 0;
	while (*s && k < max) {
		size_t n = strcspn(s, ",");
		snprintf(out + (size_t)k * len, len, "%.*s", (int)n, s);
		k++;
		s += n;
		if (*s == ',')
			s++;
	}
	return k;
}

/* What a reader gives back for a list: the strings joined by commas, cut to fit. */
static void join(char *out, size_t outlen, const char *v, size_t len, int n)
{
	size_t at = 0;
	out[0] = 0;
	for (int i = 0; i < n && at < outlen - 1; i++) {
		int k = snprintf(out + at, outlen - at, "%s%s", i ? "," : "", v + (size_t)i * len);
		at = k < 0 || at + (size_t)k >= outlen ? outlen - 1 : at + (size_t)k;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gossip_event_reader r, tail;
	struct gossip_event e, last, back;
	size_t n = 0;
	fuzz_reset();
	fuzz_file("events", data, size, 0644);
	memset(&last, 0, sizeof last);
	gossip_event_reader_init(&r, dir, 1);
	while (gossip_event_reader_next(&r, &e) == 1) {
		check(&e);
		if (++n > size)  /* an event takes a byte at least */
			abort();
		last = e;
	}
	if (gossip_event_reader_next(&r, &e) != 0)  /* nothing was added */
		abort();

	/* Append one event about a member made from the last one read. */
	struct gossip_peer p;
	char want[sizeof e.addrs];
	memset(&p, 0, sizeof p);
	memset(p.pk, 0x5a, 32);
	p.state = GOSSIP_P_SUSPECT;
	snprintf(p.info.name, sizeof p.info.name, "%s", last.name);
	p.info.naddrs = split(last.addrs, p.info.addrs[0], sizeof p.info.addrs[0], GOSSIP_MAX_ADDRS);
	p.info.ntags = split(last.tags, p.info.tags[0], sizeof p.info.tags[0], GOSSIP_MAX_TAGS);
	const char *what = last.event[0] ? last.event : "member-join";
	gossip_event_reader_init(&tail, dir, 0);
	gossip_event_append(dir, FUZZ_NOW_MS, what, &p);

	/* Read back exactly, and alone. */
	char id[45];
	gossip_b64(id, p.pk, 32);
	if (gossip_event_reader_next(&tail, &back) != 1)
		abort();
	check(&back);
	if (back.time != FUZZ_NOW_MS || strcmp(back.event, what) != 0 ||
	    strcmp(back.name, p.info.name) != 0 || strcmp(back.state, "suspect") != 0 ||
	    strcmp(back.id, id) != 0)
		abort();
	join(want, sizeof want, p.info.addrs[0], sizeof p.info.addrs[0], p.info.naddrs);
	if (strcmp(back.addrs, want) != 0)
		abort();
	join(want, sizeof want, p.info.tags[0], sizeof p.info.tags[0], p.info.ntags);
	if (strcmp(back.tags, want) != 0)
		abort();
	if (gossip_event_reader_next(&tail, &back) != 0)
		abort();

	/* The first reader reads on, past whatever the input left unfinished. */
	for (size_t k = 0; gossip_event_reader_next(&r, &e) == 1; k++) {
		check(&e);
		if (k > size + 1)
			abort();
	}
	gossip_event_reader_free(&tail);
	gossip_event_reader_free(&r);
	return 0;
}
