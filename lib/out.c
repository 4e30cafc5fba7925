/* out.c: sending messages to peers: point to point, to all, or to K random peers; UDP
 * datagrams packed with whole messages, streams over TCP and unix sockets, sealed when
 * the node has a keyring. */
#include "gossip.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { DOWN_MS = 5000, CHUNK = 60000 };  /* retry a dead peer after; stream chunk size */

struct gossip_dest {
	struct gossip_addr a;
	int fd, tcpfd;  /* a stream destination's connection; a UDP one's TCP side */
	struct gossip_buf pend, big;  /* queued messages; big: too large for a datagram */
	uint64_t down_until;  /* unreachable: reported once, retried after this (ms) */
};

void gossip_out_init(struct gossip_out *o, size_t mtu, int timeout_ms, int fanout,
                     const struct gossip_keyring *keys)
{
	memset(o, 0, sizeof *o);
	o->udp4 = o->udp6 = -1;
	o->mtu = mtu;
	o->timeout_ms = timeout_ms;
	o->fanout = fanout;
	o->keys = keys;
}

int gossip_out_add(struct gossip_out *o, const char *dest)
{
	struct gossip_dest *d = realloc(o->d, (o->n + 1) * sizeof *d);
	if (!d) {
		gossip_seterr("out of memory");
		return -1;
	}
	o->d = d;
	d = &o->d[o->n];
	memset(d, 0, sizeof *d);
	if (gossip_addr_parse(&d->a, dest) < 0)
		return -1;
	d->fd = d->tcpfd = -1;
	o->n++;
	return 0;
}

int gossip_out_add_file(struct gossip_out *o, const char *path)
{
	struct gossip_buf b = {0};
	int r = 0;
	unsigned no = 0;
	if (gossip_read_file(path, 16u << 20, &b) < 0 || gossip_buf_put(&b, "", 1) < 0)
		return -1;
	for (char *line = (char *)b.p, *next; *line; line = next) {
		next = line + strcspn(line, "\n");
		if (*next)
			*next++ = 0;
		no++;
		line += strspn(line, " \t");
		line[strcspn(line, " \t\r")] = 0;
		if (!*line || *line == '#')
			continue;
		if (gossip_out_add(o, line) < 0) {
			char why[512];
			snprintf(why, sizeof why, "%s", gossip_error());
			gossip_seterr("%s line %u: %s", path, no, why);
			r = -1;
			break;
		}
	}
	gossip_buf_free(&b);
	return r;
}

int gossip_out_queue_to(struct gossip_out *o, size_t i, const uint8_t *p, size_t n)
{
	struct gossip_dest *d = &o->d[i];
	/* A message too large for one datagram goes over TCP to the same host and port. */
	struct gossip_buf *q = d->a.kind == GOSSIP_UDP && n + (o->keys && o->keys->n ? 43 : 0) > o->mtu
	                               ? &d->big : &d->pend;
	return gossip_buf_put(q, p, n);
}

long gossip_out_index(struct gossip_out *o, const char *dest)
{
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->d[i].a.text, dest) == 0)
			return (long)i;
	struct gossip_addr a;
	if (gossip_addr_parse(&a, dest) < 0)
		return -1;
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->d[i].a.text, a.text) == 0)
			return (long)i;
	return gossip_out_add(o, dest) < 0 ? -1 : (long)o->n - 1;
}

int gossip_out_queue(struct gossip_out *o, const uint8_t *p, size_t n)
{
	size_t k = o->fanout && (size_t)o->fanout < o->n ? (size_t)o->fanout : o->n;
	/* K distinct random destinations: the first K of a partial Fisher-Yates shuffle. */
	for (size_t i = 0; i < k; i++) {
		if (k < o->n) {
			size_t j = i + randombytes_uniform((uint32_t)(o->n - i));
			struct gossip_dest t = o->d[i];
			o->d[i] = o->d[j];
			o->d[j] = t;
		}
		if (gossip_out_queue_to(o, i, p, n) < 0)
			return -1;
	}
	return 0;
}

static void dest_down(struct gossip_out *o, struct gossip_dest *d, const char *what, int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	if (!d->down_until)
		gossip_warn("%s: %s; the others still get the messages, this one is retried in %d s",
		            what, gossip_error(), DOWN_MS / 1000);
	d->down_until = gossip_now_ms() + DOWN_MS;
	o->failures++;
}

/* Write a run of whole messages to a stream, sealed in chunks when there is a keyring. */
static int stream_send(struct gossip_out *o, struct gossip_dest *d, const struct gossip_addr *a,
                       int *fd, const struct gossip_buf *q)
{
	struct gossip_buf sealed = {0};
	int r = -1;
	if (d->down_until && gossip_now_ms() < d->down_until)
		return -1;  /* still down: drop quietly, it was reported */
	for (int attempt = 0; attempt < 2; attempt++) {
		if (*fd < 0 && (*fd = gossip_connect(a, o->timeout_ms)) < 0)
			break;
		const uint8_t *p = q->p;
		size_t left = q->len;
		r = 0;
		while (left && r == 0) {
			size_t len = 0, k;
			/* Whole messages up to CHUNK bytes (a larger message alone). */
			while (len < left && (len == 0 || len < CHUNK) &&
			       gossip_cbor_scan(p + len, left - len, &gossip_msg_limits, NULL, &k) ==
			               GOSSIP_SCAN_OK &&
			       (len == 0 || len + k <= CHUNK))
				len += k;
			if (len == 0)
				len = left;
			if (o->keys && o->keys->n) {
				sealed.len = 0;
				r = gossip_seal(&sealed, o->keys, p, len) < 0 ||
				            gossip_send_timed(*fd, sealed.p, sealed.len, o->timeout_ms) < 0
				        ? -1 : 0;
				o->sent_bytes += sealed.len;
			} else {
				r = gossip_send_timed(*fd, p, len, o->timeout_ms);
				o->sent_bytes += len;
			}
			p += len;
			left -= len;
		}
		if (r == 0)
			break;
		/* The peer may have closed an idle connection: reconnect once. */
		close(*fd);
		*fd = -1;
	}
	gossip_buf_free(&sealed);
	if (r < 0 || *fd < 0) {
		dest_down(o, d, a->text, fd);
		return -1;
	}
	if (d->down_until) {
		gossip_warn("%s: reachable again", a->text);
		d->down_until = 0;
	}
	return 0;
}

static int udp_send(struct gossip_out *o, struct gossip_dest *d)
{
	int *fd = d->a.sa.ss_family == AF_INET6 ? &o->udp6 : &o->udp4;
	struct gossip_buf dg = {0}, sealed = {0};
	size_t budget = o->mtu - (o->keys && o->keys->n ? 43 : 0), at = 0, k;
	int r = 0;
	if (*fd < 0 && (*fd = socket(d->a.sa.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) {
		gossip_seterr("socket: %s", strerror(errno));
		return -1;
	}
	while (at < d->pend.len) {
		int sc = GOSSIP_SCAN_BAD;
		dg.len = 0;
		/* As many whole messages as fit. */
		while (at < d->pend.len &&
		       (sc = gossip_cbor_scan(d->pend.p + at, d->pend.len - at, &gossip_msg_limits, NULL, &k)) ==
		               GOSSIP_SCAN_OK &&
		       dg.len + k <= budget) {
			gossip_buf_put(&dg, d->pend.p + at, k);
			at += k;
		}
		if (dg.len == 0) {
			/* Queued for a datagram before a reload turned sealing on, and too large
			 * for one sealed (the message just scanned, k bytes): over TCP, as it would
			 * be queued now. */
			if (sc == GOSSIP_SCAN_OK && gossip_buf_put(&d->big, d->pend.p + at, k) == 0) {
				at += k;
				continue;
			}
			break;  /* not a message: what the queue was given was checked */
		}
		const struct gossip_buf *out = &dg;
		if (o->keys && o->keys->n) {
			sealed.len = 0;
			gossip_seal(&sealed, o->keys, dg.p, dg.len);
			out = &sealed;
		}
		if (sendto(*fd, out->p, out->len, 0, (struct sockaddr *)&d->a.sa, d->a.len) < 0) {
			if (!d->down_until)
				gossip_warn("%s: cannot send: %s", d->a.text, strerror(errno));
			d->down_until = gossip_now_ms() + DOWN_MS;
			o->failures++;
			r = -1;
			break;
		}
		o->datagrams++;
		o->sent_bytes += out->len;
	}
	gossip_buf_free(&dg);
	gossip_buf_free(&sealed);
	return r;
}

int gossip_out_flush(struct gossip_out *o)
{
	int failed = 0;
	for (size_t i = 0; i < o->n; i++) {
		struct gossip_dest *d = &o->d[i];
		if (d->pend.len) {
			if (d->a.kind == GOSSIP_UDP)
				failed += udp_send(o, d) < 0;
			else
				failed += stream_send(o, d, &d->a, &d->fd, &d->pend) < 0;
			d->pend.len = 0;
		}
		if (d->big.len) {
			struct gossip_addr tcp;
			gossip_addr_as(&tcp, &d->a, GOSSIP_TCP);
			failed += stream_send(o, d, &tcp, &d->tcpfd, &d->big) < 0;
			d->big.len = 0;
		}
	}
	return failed;
}

void gossip_out_close(struct gossip_out *o)
{
	for (size_t i = 0; i < o->n; i++) {
		if (o->d[i].fd >= 0)
			close(o->d[i].fd);
		if (o->d[i].tcpfd >= 0)
			close(o->d[i].tcpfd);
		gossip_buf_free(&o->d[i].pend);
		gossip_buf_free(&o->d[i].big);
	}
	free(o->d);
	if (o->udp4 >= 0)
		close(o->udp4);
	if (o->udp6 >= 0)
		close(o->udp6);
	o->d = NULL;
	o->n = 0;
}
