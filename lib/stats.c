/* stats.c: a long-running program's counters, kept in memory and written now and then to
 * DIR/stats, where gossip-node status sums them. */
#include "gossip.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* A lock file under DIR/stats, taken (LOCK_EX, blocking or not); its fd, or -1. */
static int take_lock(const struct gossip_stats *s, const char *file, int block)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/.%s.lock", s->dirpath, file);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | (block ? 0 : LOCK_NB)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Add the "name value" lines of path to the counters of the same names (into base). */
static void read_into(struct gossip_stats *s, const char *path, uint64_t *base)
{
	struct gossip_buf b = {0};
	if (gossip_read_file(path, 1 << 16, &b) < 0 || gossip_buf_put(&b, "", 1) < 0) {
		gossip_buf_free(&b);
		return;
	}
	char *line = (char *)b.p, *next;
	for (; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		char name[64];
		unsigned long long v;
		if (sscanf(line, "%63s %llu", name, &v) != 2)
			continue;
		for (int i = 0; i < s->n; i++)
			if (!strcmp(s->name[i], name))
				base[i] += v;
	}
	gossip_buf_free(&b);
}

/* The counters' lines: base + what this process counted. */
static int write_to(const struct gossip_stats *s, const char *path, const uint64_t *base)
{
	char text[GOSSIP_STATS_MAX * 96];
	size_t k = 0;
	for (int i = 0; i < s->n; i++)
		k += (size_t)snprintf(text + k, sizeof text - k, "%s %llu\n", s->name[i],
		                      (unsigned long long)(base[i] + *s->v[i]));
	return gossip_write_replace(path, text, k, 0644);
}

void gossip_stats_open(struct gossip_stats *s, const char *dir, const char *program)
{
	memset(s, 0, sizeof *s);
	s->lock = -1;
	snprintf(s->program, sizeof s->program, "%s", program);
	snprintf(s->dirpath, sizeof s->dirpath, "%s", gossip_path(dir, "stats"));
	/* gossip-node makes DIR/stats: a program run on its own writes none. */
	struct stat sb;
	if (stat(s->dirpath, &sb) < 0 || !S_ISDIR(sb.st_mode))
		return;  /* counted all the same, never written */
	s->lock = take_lock(s, program, 0);
	s->owner = s->lock >= 0;
}

void gossip_stats_beside(struct gossip_stats *s, const char *dir, const char *program)
{
	memset(s, 0, sizeof *s);
	s->lock = -1;
	snprintf(s->program, sizeof s->program, "%s", program);
	snprintf(s->dirpath, sizeof s->dirpath, "%s", gossip_path(dir, "stats"));
}

void gossip_stats_add(struct gossip_stats *s, const char *name, uint64_t *counter)
{
	if (s->n >= GOSSIP_STATS_MAX)
		return;
	s->name[s->n] = name;
	s->v[s->n++] = counter;
}

/* The owner writes DIR/stats/PROGRAM: what an owner before it wrote there (a node's
 * program that was restarted), plus its own counts. */
static void write_owned(struct gossip_stats *s)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/%s", s->dirpath, s->program);
	if (!s->based) {
		read_into(s, path, s->base);
		s->based = 1;
	}
	write_to(s, path, s->base);
}

void gossip_stats_tick(struct gossip_stats *s, uint64_t now)
{
	if (!s->owner || gossip_age_ms(now, s->last) < 1000)
		return;
	uint64_t sum = 0;
	for (int i = 0; i < s->n; i++)
		sum += *s->v[i];
	/* Counters only rise: an unchanged sum is unchanged counters. */
	if (s->based && sum == s->sum)
		return;
	s->sum = sum;
	s->last = now;
	write_owned(s);
}

void gossip_stats_close(struct gossip_stats *s)
{
	if (s->owner) {
		write_owned(s);
		close(s->lock);
	} else if (s->n && *s->dirpath) {
		/* A process beside the owner (a sync, an announcement): its counts are added to
		 * DIR/stats/PROGRAM.others, under that file's lock. */
		uint64_t any = 0;
		for (int i = 0; i < s->n; i++)
			any |= *s->v[i];
		char file[80], path[4200];
		snprintf(file, sizeof file, "%s.others", s->program);
		snprintf(path, sizeof path, "%s/%s", s->dirpath, file);
		int fd = any ? take_lock(s, file, 1) : -1;
		if (fd >= 0) {
			uint64_t base[GOSSIP_STATS_MAX] = {0};
			read_into(s, path, base);
			write_to(s, path, base);
			close(fd);
		}
	}
	s->owner = 0;
	s->lock = -1;
}
