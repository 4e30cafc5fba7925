/* fuzz-session: the sync handshake (session_server, session_client: SIGMA-I over X25519
 * and Ed25519) and the sealed frames after it (session_next), fed the peer's bytes. The
 * first input byte picks the library's role: even, the server (the rest is what a client
 * sends: M1, M3, its stream header, frames); odd, the client (the rest is what a server
 * sends: M2, its header, frames). The library's end is alpha (stream.h: keyring k and l,
 * trusts beta), on one end of a socket pair whose other end holds the input and is shut
 * for writing, so it reads the input, then end of stream, with a deadline of a second.
 *
 * Nothing may crash, leak or hang, and a handshake that succeeds must have proven a
 * trusted peer (fuzz_session_end aborts otherwise). The random stream is reset before
 * every input, so the library's ephemeral key, and so its M1 or M2, is the same every
 * time: the seeds (corpus/session, recorded by record-streams from a real peer) carry an
 * M3, or an M2, that opens under it, and the fuzzer starts past the handshake. What
 * follows the handshake is sealed: a changed frame does not authenticate, so fuzzing
 * mostly reaches the handshake's parsers and the refusals, and the frame layer's
 * framing (header, byte string heads, an item spanning frames) only as far as the
 * seeds' frames go. */
#include "stream.h"

static struct fuzz_node alpha;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[4200];
	(void)argc, (void)argv;
	fuzz_sodium();
	snprintf(path, sizeof path, "%s/alpha", fuzz_dir("session"));
	fuzz_node_make(&alpha, path, 'a', "kl", "b");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	if (size == 0)
		return 0;
	fuzz_socketpair(sv);
	if (size > 1 && gossip_write_all(sv[1], data + 1, size - 1) < 0)
		abort();
	shutdown(sv[1], SHUT_WR);  /* the peer has said all it will say */
	fuzz_reset();
	(void)fuzz_session_end(&alpha.auth, sv[0], data[0] & 1, 1000);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
