#!/usr/bin/env bats
# A key is one cluster-wide register (gossip(7), STATE AND MERGE RULES): the newest write
# by any origin wins, a del by any origin removes the key everywhere, and no replay, stale
# peer or late sync brings an older value back; get --all shows every row held.
load helper

setup() {
	base_setup
	for n in a b c; do mknode $n; done
	for n in a b c; do for m in a b c; do trust $n $m; done; done
	# The issue's example: a sets color, b sets it later, then b deletes it.
	gossip-send -d a set color blue >m1
	wait_for 5 eval '[ "$(gossip-send -d b set color red | tee m2 | wc -c)" -gt 0 ] && [ "$(version m2)" -gt "$(version m1)" ]'
	wait_for 5 eval '[ "$(gossip-send -d b del color | tee m3 | wc -c)" -gt 0 ] && [ "$(version m3)" -gt "$(version m2)" ]'
}

version() { gossip-inspect -d a -j "$1" | jq -r .version; }

digest() { gossip-merge -d "$1" digest; }

@test "set, another origin's set, its del: every node, whatever the order, answers absent" {
	cat m1 m2 m3 | gossip-merge -d a >/dev/null
	cat m3 m2 m1 | gossip-merge -d b >/dev/null
	cat m2 m1 m1 m3 m2 | gossip-merge -d c >/dev/null
	for n in a b c; do
		run gossip-merge -d $n get color
		assert_failure 1
		assert_output ""
		run gossip-merge -d $n keys
		assert_failure 1
	done
	[ "$(digest a)" = "$(digest b)" ] || fail "a and b differ"
	[ "$(digest a)" = "$(digest c)" ] || fail "a and c differ"
	[ "$(digest a | cut -d' ' -f2)" = 1 ]  # the del is the state
	# The history stays inspectable: each origin's row a holds (b's del replaced its own
	# set), and which wins.
	run gossip-merge -d a --all get color
	assert_success
	assert_equal "${#lines[@]}" 2
	assert_line --index 0 --regexp '^a	[0-9]+	set	superseded	blue$'
	assert_line --index 1 --regexp '^b	[0-9]+	del	wins	$'
	# b saw the del first: the older sets were refused on arrival.
	run gossip-merge -d b -a get color
	assert_success
	assert_output --regexp '^b	[0-9]+	del	wins	$'
	gossip-merge -d a -j --all get color | jq -s -e 'map(.state) == ["superseded", "wins"] and .[1].type == "del" and .[0].value == "blue"'
}

@test "the newest write wins across origins, and a later set brings the key back" {
	cat m1 m2 | gossip-merge -d c >/dev/null
	[ "$(gossip-merge -d c get color)" = red ]
	cat m3 | gossip-merge -d c >/dev/null
	run gossip-merge -d c get color
	assert_failure 1
	gossip-send -d a set color green | gossip-merge -d c >/dev/null
	[ "$(gossip-merge -d c get color)" = green ]
	[ "$(gossip-merge -d c keys)" = color ]
}

@test "two stores that saw the writes in different orders sync to one digest" {
	cat m1 m2 m3 | gossip-merge -d a >/dev/null
	gossip-send -d c set shape round >m4
	cat m4 m1 | gossip-merge -d c >/dev/null
	[ "$(gossip-merge -d c get color)" = blue ]
	[ "$(digest a)" != "$(digest c)" ]
	run --separate-stderr gossip-merge -v -d a sync "gossip-merge -d $T/c serve"
	assert_success
	[ "$(digest a)" = "$(digest c)" ] || fail "$(digest a) != $(digest c)"
	for n in a c; do
		run gossip-merge -d $n get color
		assert_failure 1
		[ "$(gossip-merge -d $n get shape)" = round ] || fail "$n: shape"
	done
	# Again: nothing to exchange.
	run --separate-stderr gossip-merge -v -d c sync "gossip-merge -d $T/a serve"
	assert_success
	[[ $stderr == *"stores equal"* ]] || fail "$stderr"
}

@test "a replay of an old set after the del is refused, and the store is unchanged" {
	cat m1 m2 m3 | gossip-merge -d c >/dev/null
	gossip-merge -d c compact >/dev/null
	before=$(snapshot c)
	run --separate-stderr gossip-merge -v -d c m1 m2
	assert_success
	assert_output ""
	[[ $stderr == *"2 messages: 0 new, 0 duplicate, 2 stale"* ]] || fail "$stderr"
	[ "$(snapshot c)" = "$before" ] || fail "the store changed"
	run gossip-merge -d c get color
	assert_failure 1
}

@test "after the tombstone is collected, a stale peer's sync cannot bring the value back (floor)" {
	cat m1 | gossip-merge -d b >/dev/null  # b is cut off: it only ever sees blue
	cat m1 m2 m3 | gossip-merge -d a >/dev/null
	# The del collected once a second old: a keeps a floor for color.
	wait_for 10 eval 'gossip-merge --tombstone-ttl 1 -d a compact >/dev/null && [ "$(digest a | cut -d" " -f2)" = 0 ]'
	[ -z "$(gossip-inspect -d a -j a/store | jq -c 'select(.watermarks | not)')" ] || fail "messages left"
	rm a/watermarks  # a cache: the floor lives in the store's record
	before=$(gossip-merge -d a digest)
	run --separate-stderr gossip-merge -v -d a sync "gossip-merge -d $T/b serve"
	assert_success
	[ "$(digest a)" = "$before" ] || fail "the floor let blue back in"
	run gossip-merge -d a get color
	assert_failure 1
	# The old value is refused whoever replays it, from a file too.
	run gossip-merge -d a m1 m2
	assert_success
	assert_output ""
	[ "$(digest a)" = "$before" ]
	# A newer write of the key is taken.
	gossip-send -d c set color green | gossip-merge -d a >/dev/null
	[ "$(gossip-merge -d a get color)" = green ]
}

@test "reserved _ keys stay per origin" {
	{ gossip-send -d a set _mine A; gossip-send -d b set _mine B; } | gossip-merge -d c >/dev/null
	run gossip-merge -d c -a get _mine
	assert_success
	assert_equal "${#lines[@]}" 2
	assert_line --regexp '^a	[0-9]+	set	current	A$'
	assert_line --regexp '^b	[0-9]+	set	current	B$'
	[ "$(gossip-merge -d c -o a get _mine)" = A ]
	[ "$(gossip-merge -d c digest | cut -d' ' -f2)" = 2 ]
}

@test "get --all: a missing key, or a bad call, is one line and changes nothing" {
	cat m1 m2 | gossip-merge -d a >/dev/null
	before=$(snapshot a)
	run --separate-stderr gossip-merge -d a --all get nothing
	assert_failure 1
	assert_output ""
	assert_error gossip-merge 'get --all: no row of "nothing" is stored'
	run --separate-stderr gossip-merge -d a -o c --all get color
	assert_failure 1
	assert_error gossip-merge 'no row of "color" is stored from that origin'
	run --separate-stderr gossip-merge -d a --all get
	assert_failure 2
	[[ ${stderr_lines[0]} == usage:* ]] || fail "$stderr"
	run --separate-stderr gossip-merge -d a --all keys
	assert_failure 2
	[ "$(snapshot a)" = "$before" ] || fail "the store changed"
}
