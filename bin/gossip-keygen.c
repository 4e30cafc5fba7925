/* gossip-keygen: make a node's Ed25519 identity and print its line for trusted. */
#include "gossip.h"

#include <getopt.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(int code)
{
	fprintf(code ? stderr : stdout,
	        "usage: gossip-keygen [-f] [-d dir] [-n name]\n"
	        "       gossip-keygen -y [-d dir]\n"
	        "       gossip-keygen -c\n");
	exit(code);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"dir", required_argument, NULL, 'd'}, {"force", no_argument, NULL, 'f'},
		{"name", required_argument, NULL, 'n'}, {"public", no_argument, NULL, 'y'},
		{"cluster", no_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {0}};
	const char *dir = NULL, *name = NULL;
	char host[64], line[128];
	int force = 0, public = 0, cluster = 0, c;

	gossip_init(argv[0]);
	while ((c = getopt_long(argc, argv, "+d:fn:ych", longopts, NULL)) != -1) {
		gossip_opt_once(c);
		switch (c) {
		case 'd': dir = optarg; break;
		case 'f': force = 1; break;
		case 'n': name = optarg; break;
		case 'y': public = 1; break;
		case 'c': cluster = 1; break;
		case 'h': usage(GOSSIP_EXIT_OK); break;
		case 'V': gossip_print_version(); break;
		default: usage(GOSSIP_EXIT_ERR);
		}
	}
	if (optind != argc || (public && (force || name)) || (cluster && (public || force || name || dir)))
		usage(GOSSIP_EXIT_ERR);
	if (cluster) {
		/* A cluster key for DIR/keyring: 32 random bytes, base64, made in locked memory. */
		uint8_t *k = sodium_malloc(32);
		char *b64 = sodium_malloc(45);
		if (!k || !b64)
			gossip_die(GOSSIP_EXIT_ERR, "out of memory");
		randombytes_buf(k, 32);
		gossip_b64(b64, k, 32);
		puts(b64);
		sodium_free(k);
		sodium_free(b64);
		return fflush(stdout) == 0 ? GOSSIP_EXIT_OK : GOSSIP_EXIT_ERR;
	}
	dir = gossip_state_dir(dir);

	struct gossip_identity id;
	if (public) {
		/* Print the public line of an existing key, remaking key.pub from it. */
		char pubname[64] = "";
		uint8_t pk[32];
		if (gossip_pub_load(dir, pk, pubname, sizeof pubname) < 0)
			*pubname = 0;
		if (gossip_identity_load(dir, &id, 1) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "key: %s", gossip_error());
		if (!*pubname && gethostname(pubname, sizeof pubname - 1) < 0)
			strcpy(pubname, "node");
		gossip_pub_line(line, sizeof line, id.pk, pubname);
		strcat(line, "\n");
		if (gossip_write_atomic(gossip_path(dir, "key.pub"), line, strlen(line), 0644, 0) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "key.pub: %s", gossip_error());
		fputs(line, stdout);
		gossip_identity_free(&id);
		return GOSSIP_EXIT_OK;
	}
	if (!name) {
		if (gethostname(host, sizeof host - 1) < 0 || !*host)
			strcpy(host, "node");
		host[sizeof host - 1] = 0;
		name = host;
	}
	if (gossip_identity_create(dir, name, force, &id) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "key: %s", gossip_error());
	gossip_pub_line(line, sizeof line, id.pk, id.name);
	puts(line);
	gossip_identity_free(&id);
	return fflush(stdout) == 0 ? GOSSIP_EXIT_OK : GOSSIP_EXIT_ERR;
}
