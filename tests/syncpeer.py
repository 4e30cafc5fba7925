"""syncpeer.py: a second implementation of the sync session of gossip(7) ANTI-ENTROPY (the
handshake, the key schedule, the sealed frames), written from the page with Debian's
python3-nacl and python3-cbor2, to play the peers the tests need, honest or not. It speaks
on stdin and stdout (a command peer, or under socat), or connects with --connect HOST:PORT.

  fakepeer SEED N K          a server whose table names N made-up entries, that sends K
                             of the N messages wanted, and quits
  liar SEED HOW              a server whose tables lie: "garbage" (never decode, however
                             large), "partial" (garbage but for fifteen sixteenths that
                             name one id each, whose messages but one it sends when
                             wanted, and lists one id for the other), "outside" (those
                             ids in the wrong sixteenth), "unsorted" (garbage, and a
                             list out of order),
                             "yours" (names entries the client does not hold),
                             "size" (a size not asked for), "more" (answers "more" asked
                             or not)
  old SEED                   a server of version 2: refuses version 4 by name, as it would
  want SEED REPEAT [invent]  a client that wants the first id it decodes REPEAT times
                             (an amplification attack), or ids it makes up
  tables SEED N [HOW]        a client that asks for N tables of the largest size; HOW
                             "split": a sixteenth's before the whole's largest; "max":
                             every table an honest client may ask for, then one more;
                             "ids": every table, then every sixteenth's ids, then one
                             sixteenth's again; "early": a sixteenth's ids too early;
                             "sizes": every size of every part, one step at a time
  pull SEED                  a client that pulls everything (--out FILE: the messages)

Clients report what came back as one JSON line on stderr (stdout may be the stream).

SEED is the 32-byte hex seed of the peer's Ed25519 identity. --keyring FILE mixes in the
first key of a keyring file, as gossip-keyring(5) describes.
"""
import base64
import hashlib
import io
import json
import os
import socket
import sys
import time

import cbor2
import nacl.bindings as nb
import nacl.signing

SS = "crypto_secretstream_xchacha20poly1305_"
TAG_MESSAGE = getattr(nb, SS + "TAG_MESSAGE")


def H(*parts, size=32, key=b""):
    h = hashlib.blake2b(digest_size=size, key=key)
    for p in parts:
        h.update(p)
    return h.digest()


def key_id(k):
    return H(b"gossip-sync cluster key id", size=8, key=k)


class Wire:
    """CBOR items on a byte stream, keeping each item's exact bytes (the transcript)."""

    def __init__(self, rfd, wfd):
        self.rfd, self.wfd, self.buf = rfd, wfd, b""

    def send(self, data):
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view):]

    def item(self):
        while True:
            if self.buf:
                f = io.BytesIO(self.buf)
                try:
                    obj = cbor2.CBORDecoder(f).decode()
                    raw, self.buf = self.buf[:f.tell()], self.buf[f.tell():]
                    return obj, raw
                except EOFError:
                    pass
            got = os.read(self.rfd, 1 << 16)
            if not got:
                raise EOFError("peer closed")
            self.buf += got


class Session:
    """One end of a sync session: the handshake, then sealed items both ways."""

    def __init__(self, wire, seed, cluster=None):
        self.w, self.sk, self.cluster = wire, nacl.signing.SigningKey(seed), cluster
        self.pk = bytes(self.sk.verify_key)
        self.plain = b""

    def prk(self, q):
        return H(b"gossip-sync 4 prk", q, size=64, key=self.cluster or b"")

    def kdf(self, label, th):
        return H(label.encode(), th, key=self._prk)

    def proof(self, label, th, key):
        sig = self.sk.sign(label + th + self.pk).signature
        return nb.crypto_aead_xchacha20poly1305_ietf_encrypt(cbor2.dumps([self.pk, sig]), None,
                                                            bytes(24), key)

    def check(self, box, label, th, key):
        pk, sig = cbor2.loads(nb.crypto_aead_xchacha20poly1305_ietf_decrypt(box, None, bytes(24),
                                                                           key))
        nacl.signing.VerifyKey(pk).verify(label + th + pk, sig)
        return pk

    def streams(self, th4, ours, theirs):
        self.tx = nb.crypto_secretstream_xchacha20poly1305_state()
        header = nb.crypto_secretstream_xchacha20poly1305_init_push(self.tx, self.kdf(ours, th4))
        self.rkey = self.kdf(theirs, th4)
        self.rx = None
        return cbor2.dumps(header)

    def client(self):
        epk, esk = nb.crypto_kx_keypair()
        kid = key_id(self.cluster) if self.cluster else b""
        m1 = cbor2.dumps(["gossip-sync", 4, 1, kid, epk])
        self.w.send(m1)
        obj, m2 = self.w.item()
        if obj[0] == "error":
            raise SystemExit("peer says: " + obj[1])
        _, es, box = obj
        self._prk = self.prk(nb.crypto_scalarmult(esk, es))
        th2 = H(m1, es)
        self.peer = self.check(box, b"gossip-sync 4 server signature", th2,
                               self.kdf("server handshake", th2))
        th3 = H(m1, m2)
        m3 = cbor2.dumps(["hs", self.proof(b"gossip-sync 4 client signature", th3,
                                           self.kdf("client handshake", th3))])
        self.pending = m3 + self.streams(H(m1, m2, m3), "client to server", "server to client")

    def server(self):
        obj, m1 = self.w.item()
        _, version, suite, kid, ec = obj
        assert version == 4 and suite == 1, obj
        epk, esk = nb.crypto_kx_keypair()
        self._prk = self.prk(nb.crypto_scalarmult(esk, ec))
        th2 = H(m1, epk)
        m2 = cbor2.dumps(["hs", epk, self.proof(b"gossip-sync 4 server signature", th2,
                                                self.kdf("server handshake", th2))])
        self.w.send(m2)
        obj, m3 = self.w.item()
        th3 = H(m1, m2)
        self.peer = self.check(obj[1], b"gossip-sync 4 client signature", th3,
                               self.kdf("client handshake", th3))
        self.pending = self.streams(H(m1, m2, m3), "server to client", "client to server")

    def send(self, *items, raw=b""):
        data = b"".join(cbor2.dumps(i) for i in items) + raw
        out = [self.pending]
        self.pending = b""
        for at in range(0, len(data), 65536):
            out.append(cbor2.dumps(nb.crypto_secretstream_xchacha20poly1305_push(
                self.tx, data[at:at + 65536], None, TAG_MESSAGE)))
        self.w.send(b"".join(out))

    def item(self):
        """The next sealed item, and its bytes."""
        while True:
            if self.plain:
                f = io.BytesIO(self.plain)
                try:
                    obj = cbor2.CBORDecoder(f).decode()
                    raw, self.plain = self.plain[:f.tell()], self.plain[f.tell():]
                    return obj, raw
                except EOFError:
                    pass
            frame, _ = self.w.item()
            if isinstance(frame, list):
                raise SystemExit("peer says: " + str(frame))
            if self.rx is None:
                self.rx = nb.crypto_secretstream_xchacha20poly1305_state()
                nb.crypto_secretstream_xchacha20poly1305_init_pull(self.rx, frame, self.rkey)
                continue
            m, _ = nb.crypto_secretstream_xchacha20poly1305_pull(self.rx, frame, None)
            self.plain += m


def sign_msg(sk, fields):
    payload = cbor2.dumps(fields, canonical=True)
    protected = cbor2.dumps({1: -8})
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {4: bytes(sk.verify_key)}, payload,
                                         sk.sign(tbs).signature]))


# The reconciliation table (gossip(7), ANTI-ENTROPY): 3 parts of 2^k cells, 12 bytes a
# cell (count, id sum, check sum), an id of 8 bytes in one cell of each part.
KMIN, KMAX = 3, 15


def cell_hash(i):
    h = H(i.to_bytes(8, "big"), size=16)
    return [int.from_bytes(h[4 * j:4 * j + 4], "little") for j in range(3)], int.from_bytes(h[12:15], "little")


def table(ids, k):
    size = 1 << k
    t = [[0, 0, 0] for _ in range(3 * size)]
    for i in ids:
        idx, chk = cell_hash(i)
        for j in range(3):
            c = t[j * size + (idx[j] & (size - 1))]
            c[0] = (c[0] + 1) & 255
            c[1] ^= i
            c[2] ^= chk
    return t


def put(t):
    return b"".join(bytes([c[0]]) + c[1].to_bytes(8, "big") + c[2].to_bytes(3, "big") for c in t)


def get(b):
    return [[b[a], int.from_bytes(b[a + 1:a + 9], "big"), int.from_bytes(b[a + 9:a + 12], "big")]
            for a in range(0, len(b), 12)]


def peel(t, k):
    """The ids of a table holding only one side's (all counts 1): None if it does not decode."""
    size, out = 1 << k, []
    changed = True
    while changed:
        changed = False
        for n, c in enumerate(t):
            if c[0] == 1:
                idx, chk = cell_hash(c[1])
                if chk != c[2] or (idx[n // size] & (size - 1)) != n % size:
                    continue
                i = c[1]
                out.append(i)
                for j in range(3):
                    d = t[j * size + (idx[j] & (size - 1))]
                    d[0] = (d[0] - 1) & 255
                    d[1] ^= i
                    d[2] ^= chk
                changed = True
    return out if all(c == [0, 0, 0] for c in t) else None


def in_part(ids, bits, prefix):
    """The ids in a part: all (bits 0), or those whose first bits are prefix."""
    return [i for i in ids if bits == 0 or i >> (64 - bits) == prefix]


def send_ids(s, bits, prefix, ids):
    """A part's listing: its ids (if any) in one item, then the empty item that ends it."""
    s.send(*[["ids", bits, prefix, b"".join(i.to_bytes(8, "big") for i in ids)]][:len(ids)],
           ["ids", bits, prefix, b""])


def fakepeer(s, n, k):
    s.server()
    s.item()  # ["summary", mode, root, count, epoch]
    ids = [int.from_bytes(os.urandom(8), "big") for _ in range(n)]
    kk = KMIN
    while kk < KMAX and (1 << kk) * 3 < 2 * n:
        kk += 1
    s.send(["table", 0, 0, kk, put(table(ids, kk))])
    while True:  # ["msgs", 0] and what the client pushes, until its want
        item = s.item()[0]
        if item[0] == "want":
            break
        # A table that did not decode (rare: 5 ids in 24 cells): the client asks for a
        # larger one, or a sixteenth's, and gets the same ids; or, given up, their list.
        if item[0] == "table":
            s.send(["table", item[1], item[2], item[3], put(table(in_part(ids, item[1], item[2]), item[3]))])
        elif item[0] == "ids":
            send_ids(s, item[1], item[2], sorted(in_part(ids, item[1], item[2])))
    now = int(time.time() * 1000)
    s.send(["msgs", n], raw=b"".join(sign_msg(s.sk, {1: 1, 2: now + i, 3: now, 4: "fake%d" % i,
                                                     5: "v"}) for i in range(k)))


def liar(s, how):
    s.server()
    s.item()
    k = KMIN
    fake = [int.from_bytes(os.urandom(8), "big") for _ in range(3)]

    def negated(bits, prefix, k):
        """A table with entries of the server's taken away: "only the client's". The same
        lie at every size asked for: one size may not decode (6 syncs in 300 at the
        smallest), the next almost surely does."""
        t = table(in_part(fake, bits, prefix), k)
        for c in t:
            c[0] = (-c[0]) & 255
        return put(t)
    if how == "yours":
        s.send(["table", 0, 0, k, negated(0, 0, k)])
    elif how == "size":
        s.send(["table", 0, 0, KMAX + 1, b"\0" * 12 * 3 * (1 << KMIN)])
    elif how == "more":
        s.send(["table", 0, 0, k, os.urandom(12 * 3 * (1 << k))])
        s.item()
        s.send(*[["table", 0, 0, k, os.urandom(12 * 3 * (1 << k))] for _ in range(5)])
    else:
        s.send(["table", 0, 0, k, os.urandom(12 * 3 * (1 << k))])
    sent = 3 * (1 << k)
    try:
        while True:
            item, _ = s.item()
            if item[0] == "ids":  # a sixteenth given up at the largest size: its ids
                _, bits, prefix = item
                ids = []
                if how == "partial" and prefix == 0:
                    ids = [int.from_bytes(os.urandom(8), "big") >> 4]
                elif how == "unsorted" and prefix == 0:
                    ids = [2, 1]
                elif how == "endless" and prefix == 0:
                    # A listing that never ends: ever more ids, in order, in the part.
                    base = 1
                    while True:
                        s.send(["ids", bits, prefix, b"".join(i.to_bytes(8, "big") for i in range(base, base + 65536))])
                        base += 65536
                send_ids(s, bits, prefix, ids)
                continue
            if item[0] != "table":
                break
            _, bits, prefix, k = item
            sent += 3 * (1 << k)
            if how in ("partial", "outside") and bits == 4 and prefix > 0:
                # An id of the server's alone in the sixteenth's first bits (decodable);
                # "outside": in the next sixteenth's bits (a lie).
                p = prefix if how == "partial" else (prefix + 1) % 16
                i = p << 60 | int.from_bytes(os.urandom(8), "big") >> 4
                s.send(["table", bits, prefix, k, put(table([i], k))])
            elif how == "yours":
                s.send(["table", bits, prefix, k, negated(bits, prefix, k)])
            else:
                s.send(["table", bits, prefix, k, os.urandom(12 * 3 * (1 << k))])
        if item[0] == "msgs":  # the client is done with tables: end the exchange
            while not (isinstance(item, list) and item[0] == "want"):
                item, _ = s.item()
            now = int(time.time() * 1000)
            # One fewer than wanted: an id the server no longer holds.
            n = len(item[1]) - 1 if how == "partial" and item[1] else 0
            s.send(["msgs", n], raw=b"".join(sign_msg(s.sk, {1: 1, 2: now + i, 3: now,
                                                              4: "part%d" % i, 5: "v"})
                                              for i in range(n)))
            s.send(["done"])
    finally:
        if how == "garbage":
            print(json.dumps({"cells": sent}), file=sys.stderr)


def old(s):
    """A version 2 server: it reads M1 and refuses another version in the clear."""
    obj, _ = s.w.item()
    s.w.send(cbor2.dumps(["error", "refused: the client speaks sync protocol version %d, the "
                                   "server version 2 (authenticated and encrypted)" % obj[1]]))


def epoch():
    """The hour whose salt keys the ids (gossip(7), The exchange)."""
    return int(time.time() * 1000) // 3600000


def first_ids(s):
    """As a client with an empty store: the summary, then the server's tables until one
    decodes: its ids."""
    s.send(["summary", "pull", bytes(16), 0, epoch()])
    t, _ = s.item()
    if t[0] != "table":
        return None, t
    while True:
        _, bits, prefix, k, cells = t
        ids = peel(get(cells), k)
        if ids is not None:
            return ids, t
        if k == KMAX:
            return None, "does not decode"
        s.send(["table", 0, 0, min(KMAX, k + 2)])
        t, _ = s.item()


def want(s, repeat, invent=None):
    s.client()
    ids, answer = first_ids(s)
    if ids is None:
        return report({"answer": answer})
    asked = [os.urandom(8) for _ in range(repeat)] if invent else [ids[0].to_bytes(8, "big")] * repeat
    s.send(["msgs", 0], ["want", asked])
    received = 0
    try:
        while True:
            item, raw = s.item()
            received += len(raw)
            if isinstance(item, list) and item and item[0] in ("error", "done"):
                break
    except (EOFError, SystemExit) as e:
        item = str(e)
    report({"decoded": len(ids), "last": item, "received": received})


def next_k(k, rounds):
    """The size a client asks for next when a part's table of size k, its rounds-th, did
    not decode."""
    return KMAX if k + 2 > KMAX or rounds + 1 >= 5 else k + 2


def tables(s, n, how=None):
    s.client()
    s.send(["summary", "pull", bytes(16), 0, epoch()])
    first, raw = s.item()
    received, count = len(raw), 1
    if how == "split":  # a sixteenth before the whole was sent at the largest size
        s.send(["table", 4, 0, 12])
    elif how == "max":  # every table an honest client can ask for, then one more
        k, rounds, reqs = first[3], 1, []
        while k < KMAX:
            k = next_k(k, rounds)
            rounds += 1
            reqs.append(["table", 0, 0, k])
        reqs += [["table", 4, j, k] for j in range(16) for k in (12, 14, 15)]
        s.send(*reqs, ["table", 4, 15, KMAX])
    elif how in ("ids", "early"):
        # "ids": every table an honest client can ask for, then each sixteenth's ids, then
        # one sixteenth's ids again; "early": a sixteenth's ids before its largest table
        k, rounds, reqs = first[3], 1, []
        while k < KMAX:
            k = next_k(k, rounds)
            rounds += 1
            reqs.append(["table", 0, 0, k])
        if how == "early":
            reqs += [["table", 4, 0, 12], ["ids", 4, 0]]
        else:
            reqs += [["table", 4, j, k] for j in range(16) for k in (12, 14, 15)]
            reqs += [["ids", 4, j] for j in range(16)]  # then one again (below)
        s.send(*reqs)
    elif how == "sizes":  # each size of the whole, then of each sixteenth, one by one
        reqs = [["table", 0, 0, k] for k in range(first[3] + 1, KMAX + 1)]
        reqs += [["table", 4, j, k] for j in range(16) for k in range(11, KMAX + 1)]
        s.send(*reqs)
    else:
        s.send(*[["table", 0, 0, KMAX] for _ in range(n)])
    listed = ends = 0
    try:
        while True:
            item, raw = s.item()
            received += len(raw)
            if item[0] == "ids":
                listed += len(item[3]) // 8
                ends += len(item[3]) == 0
                if how == "ids" and ends == 16:
                    s.send(["ids", 4, 3])
                continue
            if item[0] != "table":
                break
            count += 1
    except (EOFError, SystemExit) as e:
        item = str(e)
    report({"last": item, "received": received, "tables": count, "ids": listed})


def report(what):
    print(json.dumps(what, default=lambda b: b.hex()), file=sys.stderr)


def pull(s, out):
    s.client()
    ids, answer = first_ids(s)
    if ids is None:
        return report({"answer": answer})
    s.send(["msgs", 0], ["want", [i.to_bytes(8, "big") for i in ids]])
    head, _ = s.item()
    with open(out, "wb") as f:
        for _ in range(head[1]):
            f.write(s.item()[1])
    report({"pulled": head[1], "last": s.item()[0]})


def main():
    args = sys.argv[1:]
    cluster = None
    rfd, wfd = 0, 1
    if "--keyring" in args:
        i = args.index("--keyring")
        lines = [l.strip() for l in open(args[i + 1]) if l.strip() and not l.startswith("#")]
        cluster = base64.b64decode(lines[0])
        del args[i:i + 2]
    if "--connect" in args:
        i = args.index("--connect")
        host, port = args[i + 1].rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
        rfd = wfd = sock.fileno()
        del args[i:i + 2]
    if "--out" in args:
        i = args.index("--out")
        args[i:i + 2] = [args[i + 1]]
    cmd, seed = args[0], bytes.fromhex(args[1])
    rest = [int(a) if a.isdigit() else a for a in args[2:]]
    s = Session(Wire(rfd, wfd), seed, cluster)
    try:
        {"fakepeer": fakepeer, "liar": liar, "old": old, "want": want, "tables": tables,
         "pull": pull}[cmd](s, *rest)
    except (BrokenPipeError, ConnectionResetError, EOFError, SystemExit) as e:
        # A client says how it ended; a server's peer has its own words for it.
        if cmd in ("want", "pull", "tables"):
            report({"ended": str(e) or type(e).__name__})
    return 0


if __name__ == "__main__":
    sys.exit(main())
