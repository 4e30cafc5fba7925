#!/usr/bin/env bats
# gossip-send: making and signing messages; values, versions, batches and refusals.
load helper

@test "set, del and event each make one verified message" {
	mknode a
	gossip-send -d a set color blue >m1
	gossip-send -d a del color >m2
	gossip-send -d a event deploy v2 >m3
	gossip-send -d a event ping >m4
	run gossip-inspect -d a -j m1 m2 m3 m4
	assert_success
	assert_equal "${#lines[@]}" 4
	echo "${lines[0]}" | jq -e '.type == "set" and .key == "color" and .value == "blue" and .verified'
	echo "${lines[1]}" | jq -e '.type == "del" and (has("value") | not)'
	echo "${lines[2]}" | jq -e '.type == "event" and .key == "deploy" and .value == "v2"'
	echo "${lines[3]}" | jq -e '.type == "event" and (has("value") | not)'
}

@test "a value from a file is binary safe, byte for byte" {
	mknode a
	head -c 5000 /dev/urandom >blob
	gossip-send -d a -f blob set blob | gossip-inspect -d a -j >out
	jq -r .value out | base64 -d >back
	cmp blob back
	[ "$(jq -r .encoding out)" = base64 ]
}

@test "a value from stdin (-f -), and -b keeps text as bytes" {
	mknode a
	printf 'line1\nline2' | gossip-send -d a -f - set k | gossip-inspect -d a -j >out
	[ "$(jq -r .value out)" = "$(printf 'line1\nline2')" ]
	gossip-send -d a -b set k text | gossip-inspect -d a -j >out
	[ "$(jq -r .encoding out)" = base64 ]
	[ "$(jq -r .value out | base64 -d)" = text ]
}

@test "versions strictly increase across runs, even when the clock file is ahead" {
	mknode a
	for i in 1 2 3; do gossip-send -d a set k $i; done >seq
	gossip-inspect -d a -j seq | jq -s -e '.[0].version < .[1].version and .[1].version < .[2].version'
	last=$(gossip-inspect -d a -j seq | jq -s '.[2].version')
	# A wall clock that stepped back an hour: the persisted version still wins.
	printf '%020d\n' $((last + 3600000)) >a/clock
	gossip-send -d a set k 4 | gossip-inspect -d a -j | jq -e ".version == $((last + 3600001))"
}

@test "batch signs many operations in one process" {
	mknode a
	{
		echo "# a comment"
		seq 1 200 | sed 's/.*/set key& value &/'
		echo "set64 bin AAEC/w=="
		echo "del key1"
		echo "event done all good"
		echo
	} >ops
	gossip-send -d a batch ops >msgs
	run gossip-inspect -d a -j msgs
	assert_success
	assert_equal "${#lines[@]}" 203
	echo "${lines[1]}" | jq -e '.key == "key2" and .value == "value 2"'
	echo "${lines[200]}" | jq -e '.key == "bin" and .value == "AAEC/w==" and .encoding == "base64"'
	echo "${lines[202]}" | jq -e '.type == "event" and .value == "all good"'
	# Versions are unique and increasing within the batch.
	gossip-inspect -d a -j msgs | jq -s -e '[.[].version] as $v | $v == ($v | sort | unique)'
	# Reading from stdin works the same.
	printf 'set x 1\n' | gossip-send -d a batch | gossip-inspect -d a -j | jq -e '.key == "x"'
}

@test "batch stops at a bad line with its number; earlier messages stand" {
	mknode a
	printf 'set a 1\nset b 2\nfrobnicate c\nset d 4\n' >ops
	run --separate-stderr sh -c 'gossip-send -d a batch ops >partial'
	assert_failure 2
	assert_error gossip-send 'ops line 3: unknown verb "frobnicate"'
	run gossip-inspect -d a -j partial
	assert_success
	assert_equal "${#lines[@]}" 2
	run --separate-stderr gossip-send -d a batch <<<'set64 k !!!'
	assert_failure 2
	assert_error gossip-send "stdin line 1: the value is not base64"
}

@test "no key: exit 2, one line saying how to make one, nothing written" {
	mkdir empty
	run --separate-stderr gossip-send -d empty set k v
	assert_failure 2
	assert_error gossip-send "no key in empty: make one with gossip-keygen -d empty"
	[ -z "$output" ]
	[ -z "$(ls empty)" ]
}

@test "a key open to others is refused, and left as it was" {
	mknode a
	chmod 644 a/key
	before=$(snapshot a)
	run --separate-stderr gossip-send -d a set k v
	assert_failure 2
	assert_error gossip-send "mode 0644): run chmod 600"
	[ -z "$output" ]
	[ "$(snapshot a)" = "$before" ]
}

@test "an unreadable or broken key is refused" {
	mknode a
	mv a/key a/key.bak
	mkdir a/key
	run --separate-stderr gossip-send -d a set k v
	assert_failure 2
	assert_error gossip-send "is not a regular file"
	rmdir a/key
	echo garbage >a/key
	chmod 600 a/key
	run --separate-stderr gossip-send -d a set k v
	assert_failure 2
	assert_error gossip-send "does not hold a key"
	[ -z "$output" ]
}

@test "key.pub of another key is refused" {
	mknode a
	mknode b
	cp b/key.pub a/key.pub
	run --separate-stderr gossip-send -d a set k v
	assert_failure 2
	assert_error gossip-send "key.pub does not match"
}

@test "too large a value, an empty key, bad UTF-8 in a key: exit 2, nothing written" {
	mknode a
	head -c 64001 /dev/zero >big
	before=$(snapshot a)
	run --separate-stderr gossip-send -d a -f big set k
	assert_failure 2
	assert_error gossip-send "larger than 64000 bytes"
	[ -z "$output" ]
	run --separate-stderr gossip-send -d a set "" v
	assert_failure 2
	assert_error gossip-send "key must be 1 to 1024 bytes"
	run --separate-stderr gossip-send -d a set "$(printf '\xff')" v
	assert_failure 2
	assert_error gossip-send "UTF-8"
	[ -z "$output" ]
	[ "$(snapshot a)" = "$before" ]
}

@test "usage errors: no verb, unknown verb, wrong arguments" {
	mknode a
	run --separate-stderr gossip-send -d a
	assert_failure 2
	[[ $stderr == *"no verb and no destination: give set, del, event or batch, or peers"* ]]
	run --separate-stderr gossip-send -d a frob k
	assert_failure 2
	run --separate-stderr gossip-send -d a set k
	assert_failure 2
	run --separate-stderr gossip-send -d a del k v
	assert_failure 2
	run gossip-send --help
	assert_success
	assert_line --index 0 "usage: gossip-send [-b] [-d dir] set key value"
}
