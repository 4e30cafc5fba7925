/* nodesync: what a node's anti-entropy sync costs as its store grows (issue 19), with
 * both ends' stores held open as a node's observe holds them: each end opens its store
 * once, keeps the table of the hour's ids (gossip_sync_keep) and looks at its store as
 * observe does (lock, summary, unlock); each sync runs in two children forked from those
 * processes (observe's way: the client's in one, the server's, over a unix socket, in
 * the other). Usage:
 *   nodesync CLIENT_DIR SERVER_DIR FILE...
 * For each FILE (D messages): `gossip-merge -d SERVER_DIR FILE` stores it at the server
 * (a node's pipeline would), each end looks at its store, then one push-pull sync brings
 * the D messages to the client. Prints one line first for the opens and the first
 * looks (which make the summary and table: O(n)), then for each FILE
 *   d D look_ms C S sync_ms C S wall_ms W received R faults C S fork_ms F
 * the CPU of each end's look (client, server), of each end's sync child, the sync's
 * wall time, what the client received, the page faults of each child (pages it
 * touched first, or copied from its parent on writing), and the CPU the two fork()s
 * cost this process (observe pays it: the copy of its page tables). Messages may be up to an hour ahead of the
 * clock (as bench/scale's --max-skew 3600). Run by bench/scale. */
#include "gossip.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct end {
	const char *dir;
	struct gossip_store *st;
	struct gossip_trust trust;
};

static double cpu_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static double wall_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static double child_ms(const struct rusage *r)
{
	return (double)(r->ru_utime.tv_sec + r->ru_stime.tv_sec) * 1e3 +
	       (double)(r->ru_utime.tv_usec + r->ru_stime.tv_usec) / 1e3;
}

static void end_open(struct end *e, const char *dir)
{
	e->dir = dir;
	if (gossip_trust_load(&e->trust, dir) < 0 || !(e->st = gossip_store_open(dir, NULL)))
		gossip_die(2, "%s: %s", dir, gossip_error());
	e->trust.max_skew_ms = 3600000;
	gossip_store_set_visible(e->st, gossip_trust_has, &e->trust);
	gossip_store_forks_writers(e->st);  /* as observe: its children write it */
}

/* observe's look: the lock (what is new), the table kept, the summary. CPU ms. */
static double look(struct end *e)
{
	double t0 = cpu_ms();
	uint8_t root[16];
	uint64_t count;
	if (gossip_store_lock(e->st) < 0 || gossip_sync_keep(e->st) < 0 ||
	    gossip_store_summary(e->st, root, &count) < 0)
		gossip_die(2, "%s: %s", e->dir, gossip_error());
	gossip_store_unlock(e->st);
	return cpu_ms() - t0;
}

/* In a child: a merger on the end's open store (observe's child_merger). */
static void child_merger(struct end *e, struct gossip_merger *mg)
{
	signal(SIGPIPE, SIG_IGN);
	if (gossip_store_detach(e->st) < 0)
		_exit(2);
	*mg = (struct gossip_merger){.st = e->st, .trust = &e->trust, .say_max = 10};
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: nodesync CLIENT_DIR SERVER_DIR FILE...\n");
		return 2;
	}
	gossip_init(argv[0]);
	struct end c, s;
	double t0 = cpu_ms();
	end_open(&c, argv[1]);
	end_open(&s, argv[2]);
	double open_ms = cpu_ms() - t0;
	double lc = look(&c), ls = look(&s);
	printf("open %.1f first_look_ms %.1f %.1f\n", open_ms, lc, ls);
	fflush(stdout);
	char sock[4200];
	snprintf(sock, sizeof sock, "%s/nodesync.sock", argv[2]);
	for (int i = 3; i < argc; i++) {
		char cmd[9000];
		snprintf(cmd, sizeof cmd, "gossip-merge --max-skew 3600 -d '%s' '%s' >/dev/null", argv[2], argv[i]);
		if (system(cmd) != 0)
			gossip_die(2, "%s: failed", cmd);
		lc = look(&c);
		ls = look(&s);
		unlink(sock);
		int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		if (strlen(sock) >= sizeof a.sun_path)
			gossip_die(2, "%s: too long a path for a unix socket", sock);
		memcpy(a.sun_path, sock, strlen(sock) + 1);
		if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1) < 0)
			gossip_die(2, "%s: cannot listen", sock);
		int rep[2];
		if (pipe(rep) < 0)
			gossip_die(2, "pipe");
		double w0 = wall_ms(), f0 = cpu_ms();
		pid_t sp = fork();
		if (sp == 0) {
			struct gossip_merger mg;
			struct gossip_sync_stats st;
			child_merger(&s, &mg);
			int fd = accept(lfd, NULL, NULL);
			_exit(fd < 0 || gossip_sync_serve(&mg, fd, fd, 60000, &st) < 0 ? 1 : 0);
		}
		close(lfd);
		double fork_ms = cpu_ms() - f0;
		f0 = cpu_ms();
		pid_t cp = fork();
		if (cp == 0) {
			struct gossip_merger mg;
			struct gossip_sync_stats st;
			char peer[4300];
			close(rep[0]);
			child_merger(&c, &mg);
			snprintf(peer, sizeof peer, "unix:%s", sock);
			int r = gossip_sync_client(&mg, peer, GOSSIP_PUSH_PULL, 60000, &st);
			if (r < 0)
				fprintf(stderr, "nodesync: sync: %s\n", gossip_error());
			gossip_merge_flush(&mg);
			unsigned long long got = st.recv_msgs;
			if (write(rep[1], &got, sizeof got) != sizeof got)
				_exit(2);
			_exit(r < 0 ? 1 : 0);
		}
		fork_ms += cpu_ms() - f0;
		close(rep[1]);
		unsigned long long got = 0;
		if (read(rep[0], &got, sizeof got) != sizeof got)
			got = 0;
		close(rep[0]);
		struct rusage rc, rs;
		int stc, sts;
		if (wait4(cp, &stc, 0, &rc) < 0 || wait4(sp, &sts, 0, &rs) < 0)
			gossip_die(2, "wait");
		double w = wall_ms() - w0;
		if (!WIFEXITED(stc) || WEXITSTATUS(stc) || !WIFEXITED(sts) || WEXITSTATUS(sts))
			gossip_die(2, "the sync failed (%s)", argv[i]);
		printf("d %s look_ms %.2f %.2f sync_ms %.2f %.2f wall_ms %.1f received %llu faults %ld %ld fork_ms %.2f\n",
		       argv[i], lc, ls, child_ms(&rc), child_ms(&rs), w, got, rc.ru_minflt, rs.ru_minflt, fork_ms);
		fflush(stdout);
		unlink(sock);
	}
	gossip_store_close(c.st);
	gossip_store_close(s.st);
	return 0;
}
