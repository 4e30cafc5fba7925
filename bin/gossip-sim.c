/* gossip-sim: simulate N members spreading one update (anti-entropy, rumor mongering,
 * infect-and-die, the node as built) or finding a crashed one (SWIM), seeded so that a
 * run repeats exactly; figures per run and averaged, as text, JSON lines or a plot. */
#include "sim.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void usage(int code)
{
	fprintf(code ? stderr : stdout,
	        "usage: gossip-sim [-jv] [-m model] [-n nodes] [-k k] [-p loss] [-r runs] [-t limit]\n"
	        "                  [-M mode] [-b] [-c] [-A] [-a rounds] [-s seconds] [-i seconds]\n"
	        "                  [-J fraction] [-S mult] [--latency-mean seconds]\n"
	        "                  [--latency-sd seconds] [--sync-time seconds] [--cpus n]\n"
	        "                  [--cpu-time seconds] [--seed seed] [--own-pick]\n"
	        "                  [--second-tree always|doubt] [--plot file]\n");
	exit(code);
}

static const char *const model_names[] = {"anti-entropy", "rumor", "infect-and-die", "node", "swim"};
static const char *const mode_names[] = {"", "push", "pull", "push-pull"};

/* Everything a run of the program was asked for: lists of n, k and loss, and the rest. */
struct opts {
	struct sim_cfg base;
	uint32_t ns[32], ks[32];
	double ps[32];
	size_t nn, nk, np;
	unsigned runs;
	uint64_t seed;
	int json, verbose, k_given;
	const char *plot, *latency, *jitter;  /* --latency-mean, --latency-sd as given */
};

/* ---- parsing ---- */

static double number(int opt, const char *name, const char *s, double lo, double hi, const char *want)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (!*s || *end || errno || !(v >= lo && v <= hi)) {
		if (opt)
			gossip_die(GOSSIP_EXIT_ERR, "-%c %s: want %s", opt, s, want);
		gossip_die(GOSSIP_EXIT_ERR, "--%s %s: want %s", name, s, want);
	}
	return v;
}

/* A comma-separated list of numbers, each checked as number() does. */
static size_t list(int opt, const char *s, double lo, double hi, int whole, const char *want,
                   double *out)
{
	char buf[512], *save = NULL;
	size_t n = 0;
	if (strlen(s) >= sizeof buf)
		gossip_die(GOSSIP_EXIT_ERR, "-%c: too long a list", opt);
	if (strstr(s, ",,"))
		gossip_die(GOSSIP_EXIT_ERR, "-%c %s: want %s", opt, s, want);
	strcpy(buf, s);
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == 32)
			gossip_die(GOSSIP_EXIT_ERR, "-%c %s: at most 32 values", opt, s);
		out[n] = number(opt, NULL, tok, lo, hi, want);
		if (whole && out[n] != floor(out[n]))
			gossip_die(GOSSIP_EXIT_ERR, "-%c %s: want %s", opt, tok, want);
		n++;
	}
	if (!n || s[strlen(s) - 1] == ',' || s[0] == ',')
		gossip_die(GOSSIP_EXIT_ERR, "-%c %s: want %s", opt, s, want);
	return n;
}

/* A time option's value in seconds (decimal, fractions allowed, 0 to 1000), as the ms the
 * models count in. The ms are read from the text with the point moved three places
 * ("0.00003" as "0.00003e3"), so that they are the very number the old ms spelling gave
 * ("0.03"), not the seconds' nearest double times 1000 (0.030000000000000002): the same
 * seed gives the same figures under either. */
static double ms_option(const char *name, const char *s)
{
	char buf[128], *end;
	const char *e = strpbrk(s, "eE");
	long x = 0;
	if (strspn(s, "0123456789.eE+-") != strlen(s) || strlen(s) > 64)
		gossip_die(GOSSIP_EXIT_ERR, "--%s %s: want seconds, 0 to 1000", name, s);
	number(0, name, s, 0, 1000, "seconds, 0 to 1000");
	if (e) {
		errno = 0;
		x = strtol(e + 1, &end, 10);
		if (*end || errno || x < -1000 || x > 1000)
			gossip_die(GOSSIP_EXIT_ERR, "--%s %s: want seconds, 0 to 1000", name, s);
	}
	snprintf(buf, sizeof buf, "%.*se%ld", (int)(e ? e - s : (ptrdiff_t)strlen(s)), s, x + 3);
	return strtod(buf, NULL);
}

/* An old spelling of a time in ms: refused, naming the new one with the value in seconds
 * (never taken with a new meaning). */
static void old_ms_option(const char *old, const char *s, const char *what, const char *now)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (*s && !*end && !errno && v >= 0 && v <= 1e6)
		gossip_die(GOSSIP_EXIT_ERR, "%s %s: %s are in seconds now: %s %.15g", old, s, what, now, v / 1000);
	gossip_die(GOSSIP_EXIT_ERR, "%s %s: %s are in seconds now: %s SECONDS", old, s, what, now);
}

static int lookup(const char *s, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

/* ---- figures over the runs ---- */

struct stat1 {
	double sum, sq, min, max;
	unsigned n;
	double *v;  /* every value, for the median */
};

static void add(struct stat1 *s, double v)
{
	if ((s->n & (s->n - 1)) == 0) {  /* n is 0 or a power of two: grow */
		double *p = realloc(s->v, (s->n ? 2 * s->n : 1) * sizeof *p);
		if (!p)
			gossip_die(GOSSIP_EXIT_ERR, "out of memory");
		s->v = p;
	}
	s->v[s->n] = v;
	if (!s->n || v < s->min)
		s->min = v;
	if (!s->n || v > s->max)
		s->max = v;
	s->sum += v;
	s->sq += v * v;
	s->n++;
}

static double mean(const struct stat1 *s)
{
	return s->n ? s->sum / s->n : NAN;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The q-quantile (0.5: the median) of the values, nearest rank. */
static double quantile(const struct stat1 *s, double q)
{
	if (!s->n)
		return NAN;
	qsort(s->v, s->n, sizeof *s->v, cmp_d);
	size_t i = (size_t)ceil(q * s->n);
	return s->v[i ? i - 1 : 0];
}

static double sd(const struct stat1 *s)
{
	if (s->n < 2)
		return 0;
	double m = mean(s), v = (s->sq - s->n * m * m) / (s->n - 1);
	return v > 0 ? sqrt(v) : 0;
}

struct summary {
	struct stat1 t_all, t_last, t_ave, residue, msgs, contacts, first_suspect, first_dead,
		false_suspect, false_dead, duration;
	double **curves;  /* rounds: each run's share per round */
	size_t *lens;
	double *share;  /* rounds: the mean share per round, nshare rounds */
	size_t nshare;
	double *runs_q;  /* timed: nq per run */
	size_t nq, nruns;
	double t_max;
	unsigned by_rumor;  /* node: runs in which rumor alone informed every member */
	uint64_t drawn;
	size_t peak_bytes;
	double cpu_s;  /* the models' own CPU time */
};

/* The informed share of a timed run at time t, from its quantile times. */
static double share_at(const double *q, size_t nq, double t)
{
	size_t lo = 0, hi = nq;  /* the last i with q[i] <= t */
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (q[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	return (double)lo / (double)(nq - 1);
}

/* The grid of a timed model's curve: 200 steps up to the latest last arrival. */
enum { GRID = 200 };

static double grid_t(const struct summary *s, size_t i)
{
	return s->t_max * (double)i / GRID;
}

static double mean_share_at(const struct summary *s, double t)
{
	double sum = 0;
	for (size_t r = 0; r < s->nruns; r++)
		sum += share_at(s->runs_q + r * s->nq, s->nq, t);
	return sum / s->nruns;
}

/* ---- output ---- */

static void json_num(const char *name, double v)
{
	if (isfinite(v))
		printf(",\"%s\":%.6g", name, v);
	else
		printf(",\"%s\":null", name);
}

static void json_stat(const char *name, const struct stat1 *s)
{
	printf(",\"%s\":{\"mean\":", name);
	if (s->n)
		printf("%.6g,\"sd\":%.6g,\"median\":%.6g,\"p90\":%.6g,\"min\":%.6g,\"max\":%.6g,\"n\":%u}",
		       mean(s), sd(s), quantile(s, 0.5), quantile(s, 0.9), s->min, s->max, s->n);
	else
		printf("null,\"sd\":null,\"median\":null,\"p90\":null,\"min\":null,\"max\":null,\"n\":0}");
}

static void json_config(const struct opts *o, const struct sim_cfg *c, size_t id)
{
	printf("{\"config\":%zu,\"model\":\"%s\",\"n\":%lu", id, model_names[c->model], (unsigned long)c->n);
	if (c->model != SIM_AE)
		printf(",\"k\":%lu", (unsigned long)c->k);
	if (c->model == SIM_AE || c->model == SIM_RUMOR)
		printf(",\"mode\":\"%s\"", mode_names[c->mode]);
	if (c->model == SIM_RUMOR)
		printf(",\"interest\":\"%s\",\"stop\":\"%s\",\"anti_entropy\":%lu", c->blind ? "blind" : "feedback",
		       c->coin ? "coin" : "counter", (unsigned long)c->backup);
	if (c->model <= SIM_IAD)
		printf(",\"contacts\":\"%s\"", c->async ? "async" : "sync");
	printf(",\"loss\":%g,\"seed\":%llu,\"unit\":\"%s\"", c->loss, (unsigned long long)o->seed,
	       c->model >= SIM_NODE ? "ms" : "rounds");
	if (c->model >= SIM_NODE)
		printf(",\"latency_ms\":%g,\"jitter_ms\":%g", c->latency_ms, c->jitter_ms);
	if (c->model == SIM_NODE)
		printf(",\"sync_s\":%g,\"pick\":\"%s\",\"second_tree\":\"%s\",\"cpus\":%u,\"cpu_ms\":%g", c->every_s,
		       c->own_pick || c->n > 4096 ? "own" : "library", c->eager ? "always" : "doubt", c->cpus, c->cpu_ms);
	if (c->model == SIM_SWIM)
		printf(",\"probe_s\":%g,\"probe_jitter\":%g,\"mult\":%g", c->probe_s, c->probe_jitter, c->mult);
}

static void json_run(const struct opts *o, const struct sim_cfg *c, size_t id, unsigned run,
                     const struct sim_result *r)
{
	json_config(o, c, id);
	printf(",\"run\":%u", run);
	json_num("t_all", r->t_all >= 0 ? r->t_all : NAN);
	json_num("t_last", r->t_last);
	json_num("t_ave", r->t_ave);
	json_num("residue", r->residue);
	json_num(c->model == SIM_SWIM ? "msgs_per_s" : "msgs", r->msgs);
	if (c->model != SIM_SWIM)
		json_num("contacts", r->contacts);
	if (c->model == SIM_NODE)
		printf(",\"repaired\":%lu", (unsigned long)r->repaired);
	if (c->model == SIM_SWIM) {
		json_num("first_suspect", r->first_suspect >= 0 ? r->first_suspect : NAN);
		json_num("first_dead", r->first_dead >= 0 ? r->first_dead : NAN);
		json_num("false_suspicions", r->false_suspect);
		json_num("false_failures", r->false_dead);
		json_num("duration_s", r->duration_s);
	}
	printf(",\"drawn\":%llu", (unsigned long long)r->drawn);
	if (!r->timed) {
		fputs(",\"share\":[", stdout);
		for (size_t i = 0; i < r->nshare; i++)
			printf("%s%.6g", i ? "," : "", r->share[i]);
		putchar(']');
	} else {
		/* When each share i/(nq-1) was reached. */
		fputs(",\"reached_ms\":[", stdout);
		for (size_t i = 0; i < r->nq; i++) {
			if (isfinite(r->q[i]))
				printf("%s%.6g", i ? "," : "", r->q[i]);
			else
				printf("%snull", i ? "," : "");
		}
		putchar(']');
	}
	puts("}");
}

static void json_summary(const struct opts *o, const struct sim_cfg *c, size_t id,
                         const struct summary *s)
{
	json_config(o, c, id);
	printf(",\"summary\":true,\"runs\":%u", o->runs);
	json_num("p_all", (double)s->t_all.n / o->runs);
	if (c->model == SIM_NODE)
		json_num("p_rumor_all", (double)s->by_rumor / o->runs);
	json_stat("t_all", &s->t_all);
	json_stat("t_last", &s->t_last);
	json_stat("t_ave", &s->t_ave);
	json_stat("residue", &s->residue);
	json_stat(c->model == SIM_SWIM ? "msgs_per_s" : "msgs", &s->msgs);
	if (c->model != SIM_SWIM)
		json_stat("contacts", &s->contacts);
	if (c->model == SIM_SWIM) {
		json_stat("first_suspect", &s->first_suspect);
		json_stat("first_dead", &s->first_dead);
		json_stat("false_suspicions", &s->false_suspect);
		json_stat("false_failures", &s->false_dead);
		json_stat("duration_s", &s->duration);
	}
	fputs(",\"share\":[", stdout);
	if (c->model < SIM_NODE) {
		for (size_t i = 0; i < s->nshare; i++)
			printf("%s%.6g", i ? "," : "", s->share[i]);
	} else {
		for (size_t i = 0; i <= GRID; i++)
			printf("%s[%.6g,%.6g]", i ? "," : "", grid_t(s, i), mean_share_at(s, grid_t(s, i)));
	}
	puts("]}");
}

/* "12.3±0.4", or "-" when no run had the figure. */
static const char *pm(char *buf, size_t n, const struct stat1 *s, int prec)
{
	if (!s->n)
		snprintf(buf, n, "-");
	else
		snprintf(buf, n, "%.*f±%.*f", prec, mean(s), prec, sd(s));
	return buf;
}

/* The model and its parameters, in words: "rumor push, feedback, counter". */
static void describe(char *out, size_t n, const struct sim_cfg *c)
{
	size_t w = 0;
#define PUT(...) (w += (size_t)snprintf(out + w, w < n ? n - w : 0, __VA_ARGS__))
	PUT("%s", model_names[c->model]);
	if (c->model == SIM_AE || c->model == SIM_RUMOR)
		PUT(" %s", mode_names[c->mode]);
	if (c->model == SIM_RUMOR) {
		PUT(", %s, %s", c->blind ? "blind" : "feedback", c->coin ? "coin" : "counter");
		if (c->backup)
			PUT(", anti-entropy every %lu rounds", (unsigned long)c->backup);
	}
	if (c->model <= SIM_IAD && c->async)
		PUT(", contacts one by one");
	if (c->model >= SIM_NODE)
		PUT(", latency %g ms (sd %g)", c->latency_ms, c->jitter_ms);
	if (c->model == SIM_NODE)
		PUT(", anti-entropy every %g s", c->every_s);
	if (c->model == SIM_NODE && c->eager)
		PUT(", second tree always");
	if (c->model == SIM_NODE && c->cpus)
		PUT(", %u shared processors, %g ms a new message", c->cpus, c->cpu_ms);
	if (c->model == SIM_SWIM)
		PUT(", probe interval %g s, jitter %g, suspicion mult %g", c->probe_s, c->probe_jitter, c->mult);
#undef PUT
}

static void text_header(const struct opts *o, const struct sim_cfg *c)
{
	char d[400];
	describe(d, sizeof d, c);
	printf("# %s", d);
	printf("; %u runs, seed %llu; mean±sd over runs\n", o->runs, (unsigned long long)o->seed);
	if (c->model == SIM_SWIM)
		printf("%-7s %-3s %-6s %-11s %-14s %-14s %-14s %-14s %-10s %-10s %s\n", "n", "k", "loss",
		       "all", "suspect_ms", "first_dead_ms", "all_dead_ms", "ave_dead_ms", "false_susp",
		       "false_fail", "msgs/s");
	else if (c->model == SIM_NODE)
		printf("%-7s %-3s %-6s %-11s %-9s %-12s %-18s %-12s %-12s %s\n", "n", "k", "loss", "all",
		       "by_rumor", "t_all_ms_med", "t_all_ms", "t_ave_ms_med", "t_last_ms_p90", "msgs/node");
	else
		printf("%-7s %-3s %-6s %-11s %-14s %-14s %-14s %-18s %-12s\n", "n", c->model == SIM_AE ? "-" : "k",
		       "loss", "all", c->model >= SIM_NODE ? "t_all_ms" : "t_all", c->model >= SIM_NODE ? "t_last_ms" : "t_last",
		       c->model >= SIM_NODE ? "t_ave_ms" : "t_ave", "residue", "msgs/node");
}

static void text_summary(const struct opts *o, const struct sim_cfg *c, const struct summary *s)
{
	char a[64], b[64], d[64], e[64], f[64], g[64], h[64], k[16];
	int prec = c->model >= SIM_NODE ? 1 : 2;
	snprintf(k, sizeof k, "%lu", (unsigned long)c->k);
	char all[32];
	snprintf(all, sizeof all, "%u/%u", s->t_all.n, o->runs);
	printf("%-7lu %-3s %-6g %-11s ", (unsigned long)c->n, c->model == SIM_AE ? "-" : k, c->loss, all);
	if (c->model == SIM_SWIM) {
		printf("%-14s %-14s %-14s %-14s %-10s %-10s %s\n", pm(a, sizeof a, &s->first_suspect, 0),
		       pm(b, sizeof b, &s->first_dead, 0), pm(d, sizeof d, &s->t_all, 0),
		       pm(e, sizeof e, &s->t_ave, 0), pm(f, sizeof f, &s->false_suspect, 1),
		       pm(g, sizeof g, &s->false_dead, 1), pm(h, sizeof h, &s->msgs, 2));
		return;
	}
	if (c->model == SIM_NODE) {
		printf("%-9u %-12.1f %-18s %-12.1f %-12.1f %s\n", s->by_rumor,
		       quantile(&s->t_all, 0.5), pm(a, sizeof a, &s->t_all, 1), quantile(&s->t_ave, 0.5),
		       quantile(&s->t_last, 0.9), pm(b, sizeof b, &s->msgs, 2));
		return;
	}
	printf("%-14s %-14s %-14s %-18s %-12s\n", pm(a, sizeof a, &s->t_all, prec),
	       pm(b, sizeof b, &s->t_last, prec), pm(d, sizeof d, &s->t_ave, prec),
	       pm(e, sizeof e, &s->residue, 4), pm(f, sizeof f, &s->msgs, 2));
}

static void text_run(const struct sim_cfg *c, unsigned run, const struct sim_result *r)
{
	printf("  run %-4u t_all %-8.6g t_last %-8.6g t_ave %-8.4g residue %-8.4g msgs %.4g", run,
	       r->t_all, r->t_last, r->t_ave, r->residue, r->msgs);
	if (c->model == SIM_SWIM)
		printf(" suspect %.6g dead %.6g false %g/%g", r->first_suspect, r->first_dead,
		       r->false_suspect, r->false_dead);
	putchar('\n');
}

static void text_share(const struct sim_cfg *c, const struct summary *s)
{
	fputs("  informed share:", stdout);
	if (c->model < SIM_NODE)
		for (size_t i = 0; i < s->nshare; i++)
			printf(" %zu:%.4g", i, s->share[i]);
	else
		for (size_t i = 0; i <= GRID; i += GRID / 20)
			printf(" %.6gms:%.4g", grid_t(s, i), mean_share_at(s, grid_t(s, i)));
	putchar('\n');
}

/* ---- the plot ---- */

static char *find_gnuplot(void)
{
	const char *path = getenv("PATH");
	char buf[4096];
	if (!path)
		return NULL;
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, ":");
		if (n && n + 9 < sizeof buf) {
			snprintf(buf, sizeof buf, "%.*s/gnuplot", (int)n, p);
			if (access(buf, X_OK) == 0)
				return strdup(buf);
		}
		p += n + (p[n] == ':');
	}
	return NULL;
}

/* A gnuplot string in single quotes (a quote doubled). */
static void gp_quote(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputc('\'', f);
		fputc(*s, f);
	}
	fputc('\'', f);
}

struct curve {
	char label[160];
	double *x, *y;  /* mean */
	size_t n;
	double *runs;  /* up to PLOT_RUNS runs' curves, each n points on the same x */
	size_t nruns;
};
enum { PLOT_RUNS = 20 };

static void label(char *out, size_t n, const struct opts *o, const struct sim_cfg *c)
{
	int w = snprintf(out, n, "n=%lu", (unsigned long)c->n);
	if (o->nk > 1)
		w += snprintf(out + w, n - (size_t)w, " k=%lu", (unsigned long)c->k);
	if (o->np > 1 || c->loss > 0)
		snprintf(out + w, n - (size_t)w, " loss=%g", c->loss);
}

static int plot(const struct opts *o, struct curve *cv, size_t ncv, int timed)
{
	char *gp = find_gnuplot();
	if (!gp)
		gossip_die(GOSSIP_EXIT_ERR, "--plot %s: gnuplot is not installed (apt-get install gnuplot-nox)", o->plot);
	const char *ext = strrchr(o->plot, '.');
	int svg = strcmp(ext, ".svg") == 0;
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "'%s' 2>&1", gp);
	free(gp);
	signal(SIGXFSZ, SIG_DFL);  /* gnuplot's own (gossip_init ignores it) */
	FILE *f = popen(cmd, "w");
	signal(SIGXFSZ, SIG_IGN);
	if (!f)
		gossip_die(GOSSIP_EXIT_ERR, "--plot %s: cannot run gnuplot: %s", o->plot, strerror(errno));
	fprintf(f, "set terminal %s size 900,560%s\nset output ", svg ? "svg" : "pngcairo",
	        svg ? " dynamic" : "");
	gp_quote(f, o->plot);
	fprintf(f, "\nset title ");
	char title[600], d[400];
	describe(d, sizeof d, &o->base);
	snprintf(title, sizeof title, "gossip-sim: %s; %u runs, seed %llu", d, o->runs, (unsigned long long)o->seed);
	gp_quote(f, title);
	fprintf(f, "\nset xlabel '%s'\nset ylabel '%s'\nset yrange [0:1.02]\nset grid\n"
	        "set key top left\n",
	        timed ? "ms" : "round", o->base.model == SIM_SWIM ? "share of members that declared it dead" : "informed share");
	for (size_t i = 0; i < ncv; i++) {
		fprintf(f, "$d%zu << EOD\n", i);
		for (size_t j = 0; j < cv[i].n; j++) {
			fprintf(f, "%.6g %.6g", cv[i].x[j], cv[i].y[j]);
			for (size_t r = 0; r < cv[i].nruns; r++)
				fprintf(f, " %.6g", cv[i].runs[r * cv[i].n + j]);
			fputc('\n', f);
		}
		fputs("EOD\n", f);
	}
	fputs("plot ", f);
	for (size_t i = 0; i < ncv; i++) {
		for (size_t r = 0; r < cv[i].nruns; r++)
			fprintf(f, "$d%zu using 1:%zu with lines lc %zu lw 0.5 dt 3 notitle, ", i, r + 3, i + 1);
		fprintf(f, "$d%zu using 1:2 with lines lc %zu lw 2.5 title ", i, i + 1);
		gp_quote(f, cv[i].label);
		fputs(i + 1 < ncv ? ", " : "\n", f);
	}
	int st = pclose(f);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		gossip_die(GOSSIP_EXIT_ERR, "--plot %s: gnuplot failed", o->plot);
	return 0;
}

/* ---- running ---- */

static int run_model(const struct sim_cfg *c, struct gossip_rng *r, struct sim_result *res)
{
	memset(res, 0, sizeof *res);
	if (c->model == SIM_NODE)
		return sim_node(c, r, res);
	if (c->model == SIM_SWIM)
		return sim_swim(c, r, res);
	return sim_rounds(c, r, res);
}

static struct gossip_rng rng;  /* also libsodium's randombytes (gossip_sim_randombytes) */

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		gossip_die(GOSSIP_EXIT_ERR, "out of memory");
	return p;
}

/* The figures of one run into the summary. */
static void take(struct summary *s, const struct sim_cfg *c, unsigned run, struct sim_result *res)
{
	if (res->t_all >= 0)
		add(&s->t_all, res->t_all);
	add(&s->t_last, res->t_last);
	if (res->t_ave >= 0)
		add(&s->t_ave, res->t_ave);
	add(&s->residue, res->residue);
	add(&s->msgs, res->msgs);
	add(&s->contacts, res->contacts);
	s->by_rumor += c->model == SIM_NODE && res->t_all >= 0 && !res->repaired;
	s->drawn += res->drawn;
	if (res->peak_bytes > s->peak_bytes)
		s->peak_bytes = res->peak_bytes;
	if (c->model == SIM_SWIM) {
		if (res->first_suspect >= 0)
			add(&s->first_suspect, res->first_suspect);
		if (res->first_dead >= 0)
			add(&s->first_dead, res->first_dead);
		add(&s->false_suspect, res->false_suspect);
		add(&s->false_dead, res->false_dead);
		add(&s->duration, res->duration_s);
	}
	if (res->timed) {
		memcpy(s->runs_q + run * s->nq, res->q, s->nq * sizeof *res->q);
		if (res->t_last > s->t_max)
			s->t_max = res->t_last;
	} else {
		s->curves[run] = res->share;  /* kept */
		s->lens[run] = res->nshare;
		res->share = NULL;
		if (res->nshare > s->nshare)
			s->nshare = res->nshare;
	}
}

/* A round model's run's share at round i: once it has ended, its last share. */
static double curve_at(const struct summary *s, size_t run, size_t i)
{
	return s->curves[run][i < s->lens[run] ? i : s->lens[run] - 1];
}

static void make_curve(const struct opts *o, const struct sim_cfg *c, const struct summary *s,
                       struct curve *cv)
{
	int timed = c->model >= SIM_NODE;
	label(cv->label, sizeof cv->label, o, c);
	cv->n = timed ? GRID + 1 : s->nshare;
	cv->nruns = s->nruns < PLOT_RUNS ? s->nruns : PLOT_RUNS;
	cv->x = xmalloc(cv->n * sizeof *cv->x);
	cv->y = xmalloc(cv->n * sizeof *cv->y);
	cv->runs = xmalloc(cv->n * cv->nruns * sizeof *cv->runs);
	for (size_t j = 0; j < cv->n; j++) {
		cv->x[j] = timed ? grid_t(s, j) : (double)j;
		cv->y[j] = timed ? mean_share_at(s, cv->x[j]) : s->share[j];
		for (size_t r = 0; r < cv->nruns; r++)
			cv->runs[r * cv->n + j] = timed ? share_at(s->runs_q + r * s->nq, s->nq, cv->x[j]) : curve_at(s, r, j);
	}
}

static void run_config(const struct opts *o, const struct sim_cfg *c, size_t id, struct curve *cv)
{
	struct summary s = {.nruns = o->runs};
	struct sim_result res;
	if (c->model >= SIM_NODE) {
		size_t m = c->model == SIM_SWIM ? c->n - 1 : c->n;
		s.nq = (m < SIM_QN ? m : SIM_QN) + 1;
		s.runs_q = xmalloc(o->runs * s.nq * sizeof *s.runs_q);
	} else {
		s.curves = xmalloc(o->runs * sizeof *s.curves);
		s.lens = xmalloc(o->runs * sizeof *s.lens);
	}
	for (unsigned run = 0; run < o->runs; run++) {
		/* Run r of every configuration draws from the same stream: differences between
		 * configurations are not the luck of the draw. */
		gossip_rng_seed(&rng, o->seed, run);
		struct timespec t0, t1;
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
		if (run_model(c, &rng, &res) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
		s.cpu_s += (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		if (o->json)
			json_run(o, c, id, run + 1, &res);
		else if (o->verbose)
			text_run(c, run + 1, &res);
		take(&s, c, run, &res);
	}
	if (c->model < SIM_NODE) {
		s.share = xmalloc(s.nshare * sizeof *s.share);
		for (size_t i = 0; i < s.nshare; i++) {
			double sum = 0;
			for (size_t r = 0; r < o->runs; r++)
				sum += curve_at(&s, r, i);
			s.share[i] = sum / o->runs;
		}
	}
	if (o->json)
		json_summary(o, c, id, &s);
	else {
		text_summary(o, c, &s);
		if (o->verbose)
			text_share(c, &s);
	}
	if (getenv("GOSSIP_SIM_STATS"))  /* for bench/sim: what was drawn, and the model's memory */
		fprintf(stderr, "gossip-sim: stats: drawn %llu peak_bytes %zu cpu_s %.6f\n", (unsigned long long)s.drawn,
		        s.peak_bytes, s.cpu_s);
	fflush(stdout);
	if (o->plot)
		make_curve(o, c, &s, cv);
	if (s.curves)
		for (size_t r = 0; r < o->runs; r++)
			free(s.curves[r]);
	free(s.curves);
	free(s.lens);
	struct stat1 *all[] = {&s.t_all, &s.t_last, &s.t_ave, &s.residue, &s.msgs, &s.contacts, &s.first_suspect,
	                       &s.first_dead, &s.false_suspect, &s.false_dead, &s.duration};
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		free(all[i]->v);
	free(s.share);
	free(s.runs_q);
}

static void run_all(struct opts *o)
{
	size_t ncfg = o->nn * o->nk * o->np, id = 0;
	struct curve *cv = calloc(ncfg, sizeof *cv);
	if (!cv)
		gossip_die(GOSSIP_EXIT_ERR, "out of memory");
	for (size_t a = 0; a < o->nn; a++)
		for (size_t b = 0; b < o->nk; b++)
			for (size_t p = 0; p < o->np; p++, id++) {
				struct sim_cfg c = o->base;
				c.n = o->ns[a];
				c.k = o->ks[b];
				c.loss = o->ps[p];
				if (!o->json && id == 0)
					text_header(o, &c);
				run_config(o, &c, id, &cv[id]);
			}
	if (o->plot)
		plot(o, cv, ncfg, o->base.model >= SIM_NODE);
	for (size_t i = 0; i < ncfg; i++) {
		free(cv[i].x);
		free(cv[i].y);
		free(cv[i].runs);
	}
	free(cv);
}

int main(int argc, char **argv)
{
	enum { O_SEED = 256, O_SYNC, O_OWNPICK, O_PLOT, O_CPUS, O_CPU, O_LAT, O_LATSD, O_OLD_SYNCMS, O_OLD_CPUMS,
	       O_OLD_LATENCY, O_OLD_JITTER, O_SECOND };
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'}, {"verbose", no_argument, NULL, 'v'},
		{"model", required_argument, NULL, 'm'}, {"nodes", required_argument, NULL, 'n'},
		{"loss", required_argument, NULL, 'p'}, {"runs", required_argument, NULL, 'r'},
		{"limit", required_argument, NULL, 't'}, {"mode", required_argument, NULL, 'M'},
		{"blind", no_argument, NULL, 'b'}, {"coin", no_argument, NULL, 'c'},
		{"async", no_argument, NULL, 'A'}, {"anti-entropy", required_argument, NULL, 'a'},
		{"latency-mean", required_argument, NULL, O_LAT}, {"latency-sd", required_argument, NULL, O_LATSD},
		{"seed", required_argument, NULL, O_SEED}, {"sync-time", required_argument, NULL, O_SYNC},
		{"own-pick", no_argument, NULL, O_OWNPICK}, {"plot", required_argument, NULL, O_PLOT},
		{"second-tree", required_argument, NULL, O_SECOND},
		{"cpus", required_argument, NULL, O_CPUS}, {"cpu-time", required_argument, NULL, O_CPU},
		/* The old spellings, in ms: each refused with its new one (so that their
		 * abbreviations, --sync, --cpu, --lat, are ambiguous, not a new meaning). */
		{"latency", required_argument, NULL, O_OLD_LATENCY}, {"jitter", required_argument, NULL, O_OLD_JITTER},
		{"sync-ms", required_argument, NULL, O_OLD_SYNCMS}, {"cpu-ms", required_argument, NULL, O_OLD_CPUMS},
		{"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {0}};
	struct opts o = {
		.base = {.model = SIM_RUMOR, .latency_ms = 1, .sync_ms = 10, .every_s = 60, .probe_s = 1.25,
		         .probe_jitter = 0.1, .mult = 0.8},
		.ns = {1000}, .nn = 1, .ps = {0}, .np = 1, .runs = 10, .seed = 1,
	};
	struct sim_cfg *b = &o.base;
	double v[32];
	int c, m;
	char *end;
	const char *limit = NULL;  /* -t as given */

	/* Before gossip_init: the library's random choices come from the run's generator. */
	gossip_sim_randombytes(&rng);
	gossip_init(argv[0]);
	while ((c = getopt_long(argc, argv, "jvm:n:k:p:r:t:M:bcAa:l:L:s:i:J:S:h", longopts, NULL)) != -1) {
		gossip_opt_once(c);
		switch (c) {
		case 'j': o.json = 1; break;
		case 'v': o.verbose = 1; break;
		case 'm':
			if ((m = lookup(optarg, model_names, 5)) < 0)
				gossip_die(GOSSIP_EXIT_ERR, "-m %s: want anti-entropy, rumor, infect-and-die, node or swim", optarg);
			b->model = (enum sim_model)m;
			break;
		case 'n':
			o.nn = list('n', optarg, 2, 1000000, 1, "members, 2 to 1000000", v);
			for (size_t i = 0; i < o.nn; i++)
				o.ns[i] = (uint32_t)v[i];
			break;
		case 'k':
			o.nk = list('k', optarg, 1, 255, 1, "a whole number, 1 to 255", v);
			for (size_t i = 0; i < o.nk; i++)
				o.ks[i] = (uint32_t)v[i];
			o.k_given = 1;
			break;
		case 'p': o.np = list('p', optarg, 0, 0.99, 0, "a chance of loss, 0 to 0.99", o.ps); break;
		case 'r': o.runs = (unsigned)number('r', NULL, optarg, 1, 100000, "runs, 1 to 100000"); break;
		case 't':
			b->limit = number('t', NULL, optarg, 0, 1e6, "a limit, rounds (1 to 1000000) or seconds (above 0)");
			if (b->limit <= 0)
				gossip_die(GOSSIP_EXIT_ERR, "-t %s: want a limit, rounds (1 to 1000000) or seconds (above 0)", optarg);
			limit = optarg;
			break;
		case 'M':
			if ((m = lookup(optarg, mode_names, 4)) < 1)
				gossip_die(GOSSIP_EXIT_ERR, "-M %s: want push, pull or push-pull", optarg);
			b->mode = m;
			break;
		case 'b': b->blind = 1; break;
		case 'c': b->coin = 1; break;
		case 'A': b->async = 1; break;
		case 'a': b->backup = (uint32_t)number('a', NULL, optarg, 1, 10000, "rounds, 1 to 10000"); break;
		case 'l': old_ms_option("-l", optarg, "latencies", "--latency-mean"); break;
		case 'L': old_ms_option("-L", optarg, "latencies", "--latency-sd"); break;
		case O_OLD_LATENCY: old_ms_option("--latency", optarg, "latencies", "--latency-mean"); break;
		case O_OLD_JITTER: old_ms_option("--jitter", optarg, "latencies", "--latency-sd"); break;
		case O_OLD_SYNCMS: old_ms_option("--sync-ms", optarg, "times", "--sync-time"); break;
		case O_OLD_CPUMS: old_ms_option("--cpu-ms", optarg, "times", "--cpu-time"); break;
		case O_LAT:
			b->latency_ms = ms_option("latency-mean", optarg);
			o.latency = optarg;
			break;
		case O_LATSD:
			b->jitter_ms = ms_option("latency-sd", optarg);
			o.jitter = optarg;
			break;
		case 's': b->every_s = number('s', NULL, optarg, 0.001, 1e6, "a positive number of seconds"); break;
		case 'i': b->probe_s = number('i', NULL, optarg, 0.005, 1e4, "a positive number of seconds"); break;
		case 'J': b->probe_jitter = number('J', NULL, optarg, 0, 0.99, "a fraction from 0 to below 1"); break;
		case 'S': b->mult = number('S', NULL, optarg, 0.001, 1e4, "a positive multiplier"); break;
		case O_SEED:
			errno = 0;
			o.seed = strtoull(optarg, &end, 10);
			if (!*optarg || *end || errno || *optarg == '-')
				gossip_die(GOSSIP_EXIT_ERR, "--seed %s: want a whole number", optarg);
			break;
		case O_SYNC: b->sync_ms = ms_option("sync-time", optarg); break;
		case O_OWNPICK: b->own_pick = 1; break;
		case O_SECOND:
			if (strcmp(optarg, "always") && strcmp(optarg, "doubt"))
				gossip_die(GOSSIP_EXIT_ERR, "--second-tree %s: want always or doubt, as gossip-node -B takes", optarg);
			b->eager = !strcmp(optarg, "always");
			b->second_given = 1;
			break;
		case O_CPUS: {
			double d = number(0, "cpus", optarg, 1, 1024, "processors, 1 to 1024");
			if (d != floor(d))
				gossip_die(GOSSIP_EXIT_ERR, "--cpus %s: want processors, 1 to 1024", optarg);
			b->cpus = (unsigned)d;
			break;
		}
		case O_CPU: b->cpu_ms = ms_option("cpu-time", optarg); break;
		case O_PLOT: {
			const char *ext = strrchr(optarg, '.');
			if (!ext || (strcmp(ext, ".png") && strcmp(ext, ".svg")))
				gossip_die(GOSSIP_EXIT_ERR, "--plot %s: want a file name ending in .png or .svg", optarg);
			o.plot = optarg;
			break;
		}
		case 'h': usage(GOSSIP_EXIT_OK); break;
		case 'V': gossip_print_version(); exit(GOSSIP_EXIT_OK);
		default: usage(GOSSIP_EXIT_ERR);
		}
	}
	if (optind != argc)
		usage(GOSSIP_EXIT_ERR);
	/* What belongs to which model. */
	int rounds = b->model <= SIM_IAD;
	if (b->model == SIM_AE && o.k_given)
		gossip_die(GOSSIP_EXIT_ERR, "-k: anti-entropy has no k (one partner a round)");
	if (b->model != SIM_RUMOR && (b->blind || b->coin || b->backup))
		gossip_die(GOSSIP_EXIT_ERR, "-b, -c, -a: loss of interest is the rumor model's");
	if (b->mode && b->model != SIM_AE && b->model != SIM_RUMOR)
		gossip_die(GOSSIP_EXIT_ERR, "-M: only anti-entropy and rumor have a mode");
	if (b->async && !rounds)
		gossip_die(GOSSIP_EXIT_ERR, "-A: contacts one by one are for the round models");
	if ((b->cpus || b->cpu_ms > 0) && b->model != SIM_NODE)
		gossip_die(GOSSIP_EXIT_ERR, "--cpus, --cpu-time: the node model's");
	if (b->second_given && b->model != SIM_NODE)
		gossip_die(GOSSIP_EXIT_ERR, "--second-tree: the node model's");
	if (b->cpu_ms > 0 && !b->cpus)
		b->cpus = 1;
	if (rounds && (o.latency || o.jitter))
		gossip_die(GOSSIP_EXIT_ERR, "--latency-mean, --latency-sd: latency is for the timed models (node, swim)");
	if (rounds && limit && (b->limit < 1 || b->limit != floor(b->limit)))
		gossip_die(GOSSIP_EXIT_ERR, "-t %s: the round models count rounds: want a whole number, 1 to 1000000", limit);
	for (size_t i = 0; b->model == SIM_SWIM && i < o.nn; i++)
		if (o.ns[i] > 2000)
			gossip_die(GOSSIP_EXIT_ERR, "-n %lu: the swim model takes at most 2000 members",
			           (unsigned long)o.ns[i]);
	if (!o.k_given) {
		o.ks[0] = b->model == SIM_RUMOR ? 1 : 5;  /* 5: gossip-node's fanout */
		o.nk = 1;
	}
	if (!b->mode)
		b->mode = b->model == SIM_RUMOR ? GOSSIP_PUSH : GOSSIP_PUSH_PULL;
	if (!o.jitter)
		b->jitter_ms = b->latency_ms / 2;
	if (b->jitter_ms > b->latency_ms)
		gossip_die(GOSSIP_EXIT_ERR, "--latency-sd %s: at most the mean latency (--latency-mean %s)", o.jitter,
		           o.latency ? o.latency : "0.001");
	if (rounds && !b->limit)
		b->limit = 1000;
	if (b->model == SIM_NODE && !b->limit)
		b->limit = 10 * b->every_s;
	run_all(&o);
	if (fflush(stdout) != 0 || ferror(stdout))
		gossip_die(GOSSIP_EXIT_ERR, "stdout: %s", strerror(errno));
	return GOSSIP_EXIT_OK;
}
