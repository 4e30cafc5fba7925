#!/usr/bin/env bats
# gossip-inspect: verdicts, output forms, and every kind of bad input.
load helper

SEED=0101010101010101010101010101010101010101010101010101010101010101

setup() {
	base_setup
	two_nodes
	gossip-send -d a set color blue >good
	before=$(snapshot b)
}

# Every inspect test also checks that inspecting changed nothing in the state dir.
teardown() {
	[ "$(snapshot b)" = "$before" ]
}

@test "a trusted message: readable block, exit 0" {
	run gossip-inspect -d b good
	assert_success
	assert_line --index 0 "message at offset 0 (146 bytes)"
	assert_line --regexp '^  origin   .{8} \(a\)$'
	assert_line '  type     set'
	assert_line '  key      "color"'
	assert_line '  value    "blue"'
	assert_line --regexp '^  time     20[0-9-]+T[0-9:.]+Z$'
	assert_line '  verdict  ok: good signature, trusted signer'
}

@test "-j prints one JSON object per message with the documented fields" {
	cat good good >two
	run gossip-inspect -d b -j two
	assert_success
	assert_equal "${#lines[@]}" 2
	echo "${lines[1]}" | jq -e --arg o "$(cut -d' ' -f1 a.pub)" \
		'.origin == $o and .name == "a" and .type == "set" and .key == "color" and
		 .value == "blue" and .encoding == "text" and (.version | type) == "number" and
		 .verified == true and .signature == "good" and .trusted == true and .offset == 146'
}

@test "reads stdin by default and with -, and GOSSIP_DIR for trust" {
	GOSSIP_DIR="$T/b" run gossip-inspect <good
	assert_success
	cat good | GOSSIP_DIR="$T/b" gossip-inspect - >/dev/null
}

@test "an untrusted signer: exit 1, one line naming it, signature shown good" {
	mknode c
	run --separate-stderr gossip-inspect -d c good
	assert_failure 1
	assert_error gossip-inspect "good: offset 0: untrusted signer $(cut -c1-8 a.pub)"
	assert_line "  verdict  REJECTED: untrusted signer $(cut -c1-8 a.pub): its key is not in trusted (signature good)"
}

@test "a bit-flipped signature: exit 1, bad signature" {
	size=$(stat -c %s good)
	cp good bad
	flipbit bad -5
	run --separate-stderr gossip-inspect -d b -j bad
	assert_failure 1
	assert_error gossip-inspect "bad: offset 0: bad signature"
	echo "$output" | jq -e '.verified == false and .signature == "bad"'
}

@test "a changed payload byte breaks the signature" {
	# The value "blue" sits before the 66-byte signature: make it "blux".
	size=$(stat -c %s good)
	cp good bad
	printf 'x' | dd of=bad bs=1 seek=$((size - 67)) conv=notrunc status=none
	run --separate-stderr gossip-inspect -d b bad
	assert_failure 1
	assert_error gossip-inspect "bad signature"
}

@test "truncated input: exit 2 with the offset, earlier messages still shown" {
	cat good good >two
	head -c $(($(stat -c %s good) + 100)) two >cut
	run --separate-stderr gossip-inspect -d b -j cut
	assert_failure 2
	assert_error gossip-inspect "cut: offset 146: truncated item (100 bytes, then end of input)"
	assert_equal "${#lines[@]}" 1
}

@test "garbage: exit 2, not well-formed, at its offset" {
	{ cat good; printf '\xff\xfe\xfd'; } >junk
	run --separate-stderr gossip-inspect -d b junk
	assert_failure 2
	assert_error gossip-inspect "junk: offset 146: not well-formed CBOR (break outside an indefinite item)"
}

@test "random bytes never crash it" {
	for i in $(seq 1 50); do
		head -c $((RANDOM % 400 + 1)) /dev/urandom >rnd
		run gossip-inspect -d b rnd
		[ "$status" -le 2 ] || fail "exit $status on random input"
	done
}

@test "wrong algorithm: exit 1" {
	$PY "$BATS_TEST_DIRNAME/interop.py" pub $SEED py >>b/trusted
	before=$(snapshot b)
	$PY "$BATS_TEST_DIRNAME/interop.py" make $SEED --alg -7 >es256
	run --separate-stderr gossip-inspect -d b es256
	assert_failure 1
	assert_error gossip-inspect "algorithm -7 is not EdDSA (-8)"
}

@test "a kid that does not match the signer: bad signature" {
	$PY "$BATS_TEST_DIRNAME/interop.py" pub $SEED py >>b/trusted
	before=$(snapshot b)
	kid=$(cut -d' ' -f1 a.pub | base64 -d | od -An -tx1 | tr -d ' \n')
	# Signed with SEED's key, but claims to be from a (whom b trusts).
	$PY "$BATS_TEST_DIRNAME/interop.py" make $SEED --kid "$kid" >forged
	run --separate-stderr gossip-inspect -d b forged
	assert_failure 1
	assert_error gossip-inspect "bad signature"
}

@test "malformed messages: short kid, extra element, untagged" {
	$PY "$BATS_TEST_DIRNAME/interop.py" make $SEED --kid 3131 >m
	run --separate-stderr gossip-inspect -d b m
	assert_failure 1
	assert_error gossip-inspect "kid is 2 bytes, want a 32-byte Ed25519 public key"
	$PY "$BATS_TEST_DIRNAME/interop.py" make $SEED --extra >m
	run --separate-stderr gossip-inspect -d b m
	assert_failure 1
	assert_error gossip-inspect "COSE_Sign1 has 5 elements, want 4"
	$PY "$BATS_TEST_DIRNAME/interop.py" make $SEED --untagged >m
	run --separate-stderr gossip-inspect -d b m
	assert_failure 1
	assert_error gossip-inspect "untagged array"
}

@test "oversize and deep nesting: exit 2, and nothing crashes" {
	$PY "$BATS_TEST_DIRNAME/interop.py" big $((17 * 1024 * 1024)) >huge
	run --separate-stderr gossip-inspect -d b huge
	assert_failure 2
	assert_error gossip-inspect "item is larger than 16777216 bytes"
	$PY "$BATS_TEST_DIRNAME/interop.py" nest 100000 >deep
	run --separate-stderr gossip-inspect -d b deep
	assert_failure 2
	assert_error gossip-inspect "offset 128: item is nested deeper than 128 levels"
	run --separate-stderr gossip-inspect --diag deep
	assert_failure 2
}

@test "a key outside the signer's prefix= is refused" {
	sed -i "s|^|prefix=app/ |" b/trusted
	before=$(snapshot b)
	gossip-send -d a set app/x 1 >ok
	gossip-send -d a set other 1 >no
	run gossip-inspect -d b ok
	assert_success
	run --separate-stderr gossip-inspect -d b no
	assert_failure 1
	assert_error gossip-inspect "signer a may not write this key"
}

@test "a broken trusted file: exit 2 with its line number" {
	echo "not-a-key someone" >>b/trusted
	before=$(snapshot b)
	run --separate-stderr gossip-inspect -d b good
	assert_failure 2
	assert_error gossip-inspect "trusted line 2: no public key"
}

@test "several files: the worst exit wins; a missing file is exit 2" {
	mknode c
	gossip-send -d c set k v >stranger
	run gossip-inspect -d b good stranger good
	assert_failure 1
	run --separate-stderr gossip-inspect -d b good missing
	assert_failure 2
	assert_error gossip-inspect "missing: cannot open: No such file or directory"
}

@test "--diag prints diagnostic notation with the payload embedded" {
	run gossip-inspect --diag good
	assert_success
	assert_output --regexp '^18\(\[<<\{1: -8\}>>, \{4: h.[0-9a-f]{64}.\}, <<\{1: 1, 2: [0-9]+, 3: [0-9]+, 4: "color", 5: "blue"\}>>, h.[0-9a-f]{128}.\]\)$'
	run --separate-stderr gossip-inspect --diag -j good
	assert_failure 2
	assert_error gossip-inspect "-j and --diag exclude each other"
}

@test "a compacted store's watermark record is shown as what it is; a damaged one is rejected" {
	mknode w
	gossip-send -d "$T/w" set x 1 | gossip-merge -d "$T/w" >/dev/null
	gossip-send -d "$T/w" del x | gossip-merge -d "$T/w" >/dev/null
	# The delete collected once a second old: its version goes into the store's record.
	wait_for 5 eval 'gossip-merge --tombstone-ttl 1 -d "$T/w" compact >/dev/null && gossip-inspect -d "$T/w" -j "$T/w/store" | jq -e -s "length == 1 and .[0].watermarks" >/dev/null'
	pk=$(cut -d' ' -f1 "$T/w.pub")
	run --separate-stderr gossip-inspect -d "$T/w" -j "$T/w/store"
	assert_success
	[ -z "$stderr" ] || fail "$stderr"
	jq -e --arg pk "$pk" '.offset == 0 and (.watermarks | length == 1) and .watermarks[0].origin == $pk and
		.watermarks[0].name == "w" and .watermarks[0].version > 0' <<<"$output" || fail "$output"
	run --separate-stderr gossip-inspect -d "$T/w" "$T/w/store"
	assert_success
	assert_line --index 0 --partial "watermarks (offset 0"
	assert_line --index 1 --partial "  $pk w  "
	[[ ${lines[1]} =~ \ \ [0-9]+$ ]] || fail "${lines[1]}"
	# One changed byte of its check (a flipped bit: always a change): rejected, exit 1.
	flipbit "$T/w/store" $(($(stat -c %s "$T/w/store") - 1))
	run --separate-stderr gossip-inspect -d "$T/w" -j "$T/w/store"
	assert_failure 1
	[[ $stderr == *"offset 0"* ]] || fail "$stderr"
}
