"""syncpeer.py: a second implementation of the sync session of gossip(7) ANTI-ENTROPY (the
handshake, the key schedule, the sealed frames), written from the page with Debian's
python3-nacl and python3-cbor2, to play the peers the tests need, honest or not. It speaks
on stdin and stdout (a command peer, or under socat), or connects with --connect HOST:PORT.

  fakepeer SEED N K          a server that promises N messages, sends K, and quits
  leaves SEED COUNT PER      a server that announces COUNT messages, then answers each
                             level-one bucket with PER made-up leaves (a memory attack)
  want SEED REPEAT [invent]  a client that wants the first slot it is offered REPEAT times
                             (an amplification attack), or a slot it makes up
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
        return H(b"gossip-sync 2 prk", q, size=64, key=self.cluster or b"")

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
        m1 = cbor2.dumps(["gossip-sync", 2, 1, kid, epk])
        self.w.send(m1)
        obj, m2 = self.w.item()
        if obj[0] == "error":
            raise SystemExit("peer says: " + obj[1])
        _, es, box = obj
        self._prk = self.prk(nb.crypto_scalarmult(esk, es))
        th2 = H(m1, es)
        self.peer = self.check(box, b"gossip-sync 2 server signature", th2,
                               self.kdf("server handshake", th2))
        th3 = H(m1, m2)
        m3 = cbor2.dumps(["hs", self.proof(b"gossip-sync 2 client signature", th3,
                                           self.kdf("client handshake", th3))])
        self.pending = m3 + self.streams(H(m1, m2, m3), "client to server", "server to client")

    def server(self):
        obj, m1 = self.w.item()
        _, version, suite, kid, ec = obj
        assert version == 2 and suite == 1, obj
        epk, esk = nb.crypto_kx_keypair()
        self._prk = self.prk(nb.crypto_scalarmult(esk, ec))
        th2 = H(m1, epk)
        m2 = cbor2.dumps(["hs", epk, self.proof(b"gossip-sync 2 server signature", th2,
                                                self.kdf("server handshake", th2))])
        self.w.send(m2)
        obj, m3 = self.w.item()
        th3 = H(m1, m2)
        self.peer = self.check(obj[1], b"gossip-sync 2 client signature", th3,
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


def fakepeer(s, n, k):
    s.server()
    s.item()  # ["summary", mode, root, count]
    s.send(["l1", b"\xff" * 4096, n])
    l2, _ = s.item()
    # N made-up slots in the first bucket asked for, so that the client wants N.
    offer = [[os.urandom(16), 1, os.urandom(8)] for _ in range(n)]
    s.send(*[["leaves", [], offer if i == 0 else []] for i in range(len(l2[1]))])
    s.item()  # ["msgs", 0]
    s.item()  # ["want", [...]]
    now = int(time.time() * 1000)
    s.send(["msgs", n], raw=b"".join(sign_msg(s.sk, {1: 1, 2: now + i, 3: now, 4: "fake%d" % i,
                                                     5: "v"}) for i in range(k)))


def leaves(s, count, per):
    s.server()
    s.item()
    s.send(["l1", b"\xff" * 4096, count])
    l2, _ = s.item()
    for _ in l2[1]:
        s.send(["leaves", [], [[b"\x01" * 16, 1, b"\x02" * 8]] * per])


def want(s, repeat, invent=None):
    s.client()
    s.send(["summary", "pull", bytes(16), 0])
    l1, _ = s.item()
    if l1[0] != "l1":
        return report({"answer": l1})
    hashes = l1[1]
    asked = [i for i in range(256) if hashes[16 * i:16 * i + 16] != bytes(16)]
    s.send(["l2", [[i, bytes(4096)] for i in asked]])
    offered = []
    for _ in asked:
        item, _ = s.item()
        offered += [leaf[0] for leaf in item[2]]
    s.send(["msgs", 0], ["want", [os.urandom(16) if invent else offered[0]] * repeat])
    received = 0
    try:
        while True:
            item, raw = s.item()
            received += len(raw)
            if isinstance(item, list) and item and item[0] in ("error", "done"):
                break
    except (EOFError, SystemExit) as e:
        item = str(e)
    report({"offered": len(offered), "last": item, "received": received})


def report(what):
    print(json.dumps(what, default=lambda b: b.hex()), file=sys.stderr)


def pull(s, out):
    s.client()
    s.send(["summary", "pull", bytes(16), 0])
    l1, _ = s.item()
    if l1[0] != "l1":
        return report({"answer": l1})
    asked = [i for i in range(256) if l1[1][16 * i:16 * i + 16] != bytes(16)]
    s.send(["l2", [[i, bytes(4096)] for i in asked]])
    offered = []
    for _ in asked:
        item, _ = s.item()
        offered += [leaf[0] for leaf in item[2]]
    s.send(["msgs", 0], ["want", offered])
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
        {"fakepeer": fakepeer, "leaves": leaves, "want": want, "pull": pull}[cmd](s, *rest)
    except (BrokenPipeError, ConnectionResetError, EOFError, SystemExit) as e:
        # A client says how it ended; a server's peer has its own words for it.
        if cmd in ("want", "pull"):
            report({"ended": str(e) or type(e).__name__})
    return 0


if __name__ == "__main__":
    sys.exit(main())
