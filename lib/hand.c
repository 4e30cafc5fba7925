/* hand.c: a sync's connection handed from gossip-listen to gossip-peers observe over a
 * unix datagram socket (SCM_RIGHTS), so that the process that keeps the store's index
 * serves it: the serve reads only what is new in the store, not the whole store. */
#include "gossip.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int hand_addr(struct sockaddr_un *a, const char *path)
{
	memset(a, 0, sizeof *a);
	a->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof a->sun_path) {
		gossip_seterr("%s: the path is longer than a unix socket's %zu bytes", path, sizeof a->sun_path - 1);
		return -1;
	}
	memcpy(a->sun_path, path, strlen(path));
	return 0;
}

int gossip_hand_listen(const char *path, uint64_t *ino)
{
	struct sockaddr_un a;
	struct stat sb;
	int one = 1;
	if (hand_addr(&a, path) < 0)
		return -1;
	/* A socket left by a process that stopped is replaced; one a process still reads
	 * (another observe on the same path), or anything else, is not ours. */
	if (lstat(path, &sb) == 0) {
		if (!S_ISSOCK(sb.st_mode)) {
			gossip_seterr("%s: exists and is not a socket: remove it", path);
			return -1;
		}
		int t = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		int live = t >= 0 && connect(t, (struct sockaddr *)&a, sizeof a) == 0;
		if (t >= 0)
			close(t);
		if (live) {
			gossip_seterr("%s: another process serves there (a second observe on the same directory?)", path);
			return -1;
		}
		unlink(path);
	}
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0) {
		gossip_seterr("%s: socket: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/* Only this user may hand a connection (and the receiver checks who sent it). */
	mode_t old = umask(077);
	int r = bind(fd, (struct sockaddr *)&a, sizeof a);
	umask(old);
	if (r < 0 || lstat(path, &sb) < 0) {
		gossip_seterr("%s: bind: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	*ino = (uint64_t)sb.st_ino;
	return fd;
}

int gossip_hand_send(const char *path, int conn, int done, const char *peer)
{
	struct sockaddr_un a;
	if (hand_addr(&a, path) < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		gossip_seterr("socket: %s", strerror(errno));
		return -1;
	}
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof u);
	struct iovec iov = {(void *)peer, strlen(peer) + 1};
	struct msghdr m = {.msg_name = &a, .msg_namelen = sizeof a, .msg_iov = &iov, .msg_iovlen = 1,
	                   .msg_control = u.buf, .msg_controllen = sizeof u.buf};
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(2 * sizeof(int));
	int fds[2] = {conn, done};
	memcpy(CMSG_DATA(c), fds, sizeof fds);
	/* Never waits: a receiver that is not there, or behind, is the command's turn. */
	ssize_t k = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
	int e = errno;
	close(fd);
	if (k < 0) {
		gossip_seterr("%s: %s", path, strerror(e));
		return -1;
	}
	return 0;
}

int gossip_hand_take(int done, int timeout_ms)
{
	char c = 'T';
	struct pollfd p = {done, POLLIN, 0};
	if (send(done, &c, 1, MSG_NOSIGNAL) != 1)
		return -1;
	while (poll(&p, 1, timeout_ms) < 0)
		if (errno != EINTR)
			return -1;
	return recv(done, &c, 1, MSG_DONTWAIT) == 1 && c == 'G' ? 0 : -1;
}

int gossip_hand_given(int done, int timeout_ms)
{
	char c;
	struct pollfd p = {done, POLLIN, 0};
	while (poll(&p, 1, timeout_ms) < 0)
		if (errno != EINTR)
			return -1;
	if (recv(done, &c, 1, MSG_DONTWAIT) != 1 || c != 'T')
		return -1;
	c = 'G';
	return send(done, &c, 1, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

int gossip_hand_recv(int sock, int *conn, int *done, char *peer, size_t peersz)
{
	union {
		char buf[CMSG_SPACE(4 * sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} u;
	char name[GOSSIP_HAND_PEER];
	struct iovec iov = {name, sizeof name};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
	/* A bounded number a call, so that a flood of junk cannot hold the caller. */
	for (int tries = 0; tries < 64; tries++) {
		m.msg_controllen = sizeof u.buf;
		ssize_t k = recvmsg(sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (k < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
		int fds[4], nfd = 0, from_us = 0;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
			if (c->cmsg_level != SOL_SOCKET)
				continue;
			if (c->cmsg_type == SCM_RIGHTS) {
				size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
				for (size_t i = 0; i < n && nfd < 4; i++)
					memcpy(&fds[nfd++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			} else if (c->cmsg_type == SCM_CREDENTIALS) {
				struct ucred cr;
				memcpy(&cr, CMSG_DATA(c), sizeof cr);
				from_us = cr.uid == geteuid();
			}
		}
		/* A hand-off is this user's, whole, with two sockets, and a name; anything
		 * else is dropped (its descriptors closed) and the next one looked at. */
		struct stat s0, s1;
		int good = from_us && nfd == 2 && !(m.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) && k >= 2 &&
		           name[k - 1] == 0 && memchr(name, 0, (size_t)k - 1) == NULL && fstat(fds[0], &s0) == 0 &&
		           S_ISSOCK(s0.st_mode) && fstat(fds[1], &s1) == 0 && S_ISSOCK(s1.st_mode);
		if (good) {
			*conn = fds[0];
			*done = fds[1];
			snprintf(peer, peersz, "%s", name);
			return 1;
		}
		for (int i = 0; i < nfd; i++)
			close(fds[i]);
	}
	return 0;
}
