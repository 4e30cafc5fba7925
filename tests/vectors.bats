#!/usr/bin/env bats
# Public vectors (copied from shared/vectors into tests/data): RFC 8949 Appendix A through
# gossip-inspect --diag, and the COSE Ed25519 Sign1 example (also byte for byte in t-msg).
load helper

@test "--diag prints every RFC 8949 Appendix A example as the RFC writes it" {
	# One CBOR sequence of all the examples, in the table's order.
	grep -v '^#' "$DATA/rfc8949-appendix-a.diag" | cut -f1 | tr -d '\n' | xxd -r -p >all.cbor
	grep -v '^#' "$DATA/rfc8949-appendix-a.diag" | cut -f2- >want
	run gossip-inspect --diag all.cbor
	assert_success
	printf '%s\n' "$output" >got
	diff -u want got
}

@test "the table agrees with the cbor/test-vectors file wherever that gives notation or JSON" {
	# Cross-check our transcription of the RFC against the public vectors: the
	# 'diagnostic' entries must match exactly, the 'decoded' ones as JSON values.
	$PY - "$DATA/cbor-appendix-a.json" "$DATA/rfc8949-appendix-a.diag" <<'PY'
import json, math, re, sys
vec = json.load(open(sys.argv[1]))
table = dict(l.rstrip("\n").split("\t", 1) for l in open(sys.argv[2]) if not l.startswith("#"))
checked = 0
for e in vec:
    h = e["hex"]
    if h == "f818":
        continue
    d = table[h]
    if "diagnostic" in e:
        assert e["diagnostic"] == d, (h, e["diagnostic"], d)
    else:
        # Notation to JSON: drop indefinite markers, join chunked strings.
        j = re.sub(r"\(_ (\"[^)]*\")\)", lambda m: '"' + "".join(re.findall(r'"([^"]*)"', m.group(1))) + '"', d)
        j = j.replace("[_ ", "[").replace("{_ ", "{")
        j = re.sub(r"([{,] )(-?\d+):", r'\1"\2":', j)
        got = json.loads(j)
        assert got == e["decoded"] or (isinstance(got, float) and math.isclose(got, e["decoded"])), (h, got, e["decoded"])
    checked += 1
assert checked == len(vec) - 1, checked
PY
}

@test "0xf818 is not well-formed (RFC 8949 section 3.3): exit 2" {
	printf '\xf8\x18' >s
	run --separate-stderr gossip-inspect --diag s
	assert_failure 2
	assert_error gossip-inspect "s: offset 0: not well-formed CBOR (byte 0xf8)"
}

@test "the COSE Ed25519 example is read, shown, and refused as a gossip message" {
	jq -r .output.cbor "$DATA/cose-eddsa-sig-01.json" | xxd -r -p >cose
	run gossip-inspect --diag cose
	assert_success
	want=$(jq -r .output.cbor_diag "$DATA/cose-eddsa-sig-01.json" | tr 'A-F' 'a-f' |
		sed "s/h'a201270300'/<<{1: -8, 3: 0}>>/")
	assert_output "$want"
	run --separate-stderr gossip-inspect cose
	assert_failure 1
	assert_error gossip-inspect "protected header must be exactly {1: -8} (EdDSA)"
}
