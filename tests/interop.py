"""interop.py: a second, independent implementation of the message format for the tests,
written with Debian's python3-cbor2 and python3-nacl (run by /usr/bin/python3).

  verify           read one message on stdin, check it from its bytes alone, print JSON
  make SEED ...    write a message signed with the 32-byte hex SEED to stdout;
                   options: --type N --key K (--key-hex HEX) --value V --version N --alg N --kid HEX
                   --extra (a fifth COSE element) --untagged
  probe SEED TYPE HEX  write a probe (4 ping, 5 ack): {1: TYPE, 5: the bytes HEX}, signed
  pub SEED         print the base64 public key for the hex SEED (a trusted line)
  fakepeer SEED N K   act as a sync server that promises N messages, sends K, and quits
  nest N           write an array nested N deep
  big N            write a byte string of N bytes
"""
import base64
import json
import sys
import time

import cbor2
import nacl.signing
from nacl.exceptions import BadSignatureError


def sig_structure(protected, payload):
    return cbor2.dumps(["Signature1", protected, b"", payload])


def verify():
    data = sys.stdin.buffer.read()
    item = cbor2.loads(data)
    assert isinstance(item, cbor2.CBORTag) and item.tag == 18, "not tag 18"
    protected, unprotected, payload, signature = item.value
    assert cbor2.loads(protected) == {1: -8}, "alg is not EdDSA"
    kid = unprotected[4]
    assert len(kid) == 32, "kid is not 32 bytes"
    try:
        nacl.signing.VerifyKey(kid).verify(sig_structure(protected, payload), signature)
    except BadSignatureError:
        print(json.dumps({"verified": False}))
        return 1
    fields = cbor2.loads(payload)
    # The payload must be deterministically encoded: cbor2's canonical encoding agrees.
    assert cbor2.dumps(fields, canonical=True) == payload, "payload not deterministic"
    value = fields.get(5)
    out = {
        "verified": True,
        "origin": base64.b64encode(kid).decode(),
        "type": fields[1],
        "version": fields[2],
        "time": fields[3],
        "key": fields[4],
    }
    if isinstance(value, bytes):
        out["value_b64"] = base64.b64encode(value).decode()
    elif value is not None:
        out["value"] = value
    print(json.dumps(out))
    return 0


def make(argv):
    seed = bytes.fromhex(argv[0])
    opts = {"--type": "1", "--key": "k", "--value": "v", "--version": None, "--alg": "-8",
            "--kid": None, "--time": None}
    flags = set()
    i = 1
    while i < len(argv):
        if argv[i] in ("--extra", "--untagged"):
            flags.add(argv[i])
            i += 1
        else:
            opts[argv[i]] = argv[i + 1]
            i += 2
    sk = nacl.signing.SigningKey(seed)
    now = int(time.time() * 1000)
    fields = {1: int(opts["--type"]), 2: int(opts["--version"] or now),
              3: int(opts["--time"] or now),
              4: bytes.fromhex(opts["--key-hex"]).decode() if "--key-hex" in opts else opts["--key"]}
    if opts["--value"] != "-":
        fields[5] = opts["--value"]
    payload = cbor2.dumps(fields, canonical=True)
    protected = cbor2.dumps({1: int(opts["--alg"])})
    kid = bytes.fromhex(opts["--kid"]) if opts["--kid"] else bytes(sk.verify_key)
    signature = sk.sign(sig_structure(protected, payload)).signature
    body = [protected, {4: kid}, payload, signature]
    if "--extra" in flags:
        body.append(b"")
    item = body if "--untagged" in flags else cbor2.CBORTag(18, body)
    sys.stdout.buffer.write(cbor2.dumps(item))
    return 0


def sign_msg(sk, fields):
    payload = cbor2.dumps(fields, canonical=True)
    protected = cbor2.dumps({1: -8})
    signature = sk.sign(sig_structure(protected, payload)).signature
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {4: bytes(sk.verify_key)}, payload, signature]))


def probe(argv):
    sk = nacl.signing.SigningKey(bytes.fromhex(argv[0]))
    sys.stdout.buffer.write(sign_msg(sk, {1: int(argv[1]), 5: bytes.fromhex(argv[2])}))
    return 0


def fakepeer(argv):
    """A sync server that answers as gossip(7) says, then promises N messages, sends K
    of them and quits: the client must keep the K whole ones."""
    sk = nacl.signing.SigningKey(bytes.fromhex(argv[0]))
    n, k = int(argv[1]), int(argv[2])
    dec = cbor2.CBORDecoder(sys.stdin.buffer)
    out = sys.stdout.buffer
    dec.decode()  # ["gossip-sync", 1, mode, root, count]
    out.write(cbor2.dumps(["l1", b"\xff" * 4096]))
    out.flush()
    l2 = dec.decode()  # ["l2", [[i, hashes]...]]
    for _ in l2[1]:
        out.write(cbor2.dumps(["leaves", [], []]))
    out.flush()
    dec.decode()  # ["msgs", 0]
    dec.decode()  # ["want", []]
    out.write(cbor2.dumps(["msgs", n]))
    now = int(time.time() * 1000)
    for i in range(k):
        out.write(sign_msg(sk, {1: 1, 2: now + i, 3: now, 4: "fake%d" % i, 5: "v"}))
    out.flush()
    return 0


def main():
    cmd, argv = sys.argv[1], sys.argv[2:]
    if cmd == "verify":
        return verify()
    if cmd == "make":
        return make(argv)
    if cmd == "pub":
        pk = bytes(nacl.signing.SigningKey(bytes.fromhex(argv[0])).verify_key)
        print(base64.b64encode(pk).decode() + " " + (argv[1] if len(argv) > 1 else "py"))
        return 0
    if cmd == "fakepeer":
        return fakepeer(argv)
    if cmd == "probe":
        return probe(argv)
    if cmd == "nest":
        n = int(argv[0])
        sys.stdout.buffer.write(b"\x81" * n + b"\x00")
        return 0
    if cmd == "big":
        n = int(argv[0])
        sys.stdout.buffer.write(cbor2.dumps(b"\x00" * n))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
