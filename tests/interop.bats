#!/usr/bin/env bats
# Interoperability with an implementation written by others: Debian's python3-cbor2 and
# python3-nacl (tests/interop.py) check our messages, and we check theirs.
load helper

SEED=0202020202020202020202020202020202020202020202020202020202020202

@test "Python verifies a message made by gossip-send from its bytes alone" {
	mknode a
	gossip-send -d a set "grüße" "välue" >m
	run $PY "$BATS_TEST_DIRNAME/interop.py" verify <m
	assert_success
	echo "$output" | jq -e --arg o "$(cut -d' ' -f1 a.pub)" \
		'.verified and .origin == $o and .type == 1 and .key == "grüße" and .value == "välue"'
	head -c 300 /dev/urandom >blob
	gossip-send -d a -f blob event upload >m
	$PY "$BATS_TEST_DIRNAME/interop.py" verify <m >out
	[ "$(jq -r .value_b64 out | base64 -d | od -An -tx1)" = "$(od -An -tx1 blob)" ]
	gossip-send -d a del k >m
	$PY "$BATS_TEST_DIRNAME/interop.py" verify <m | jq -e '.type == 2 and (has("value") | not)'
}

@test "Python detects a tampered gossip-send message" {
	mknode a
	gossip-send -d a set k v >m
	size=$(stat -c %s m)
	flipbit m -1
	run $PY "$BATS_TEST_DIRNAME/interop.py" verify <m
	assert_failure 1
	echo "$output" | jq -e '.verified == false'
}

@test "a message built and signed in Python is accepted when trusted, rejected when not" {
	mknode b
	$PY "$BATS_TEST_DIRNAME/interop.py" make $SEED --key app/x --value hello >pm
	run --separate-stderr gossip-inspect -d b pm
	assert_failure 1
	assert_error gossip-inspect "untrusted signer"
	$PY "$BATS_TEST_DIRNAME/interop.py" pub $SEED python >>b/trusted
	run gossip-inspect -d b -j pm
	assert_success
	echo "$output" | jq -e '.verified and .name == "python" and .key == "app/x" and .value == "hello"'
	$PY "$BATS_TEST_DIRNAME/interop.py" make $SEED --type 2 --key gone --value - >pd
	gossip-inspect -d b -j pd | jq -e '.type == "del" and .verified'
}
