#!/usr/bin/env bats
# files.bats: the small files in DIR never take a node down. DIR/events and DIR/rejects
# rotate at a size (GOSSIP_LOG_MAX for tests) and a reader follows them across it; a full
# disk under the clock, the peer table, events and rejects is one warning line, and the
# program goes on; a damaged key, key.pub, trusted, keyring, clock or peer table is one
# clear error that says how to recover, and nothing in DIR/store changes.
load helper

setup() {
	base_setup
	mknode n1
	cat n1.pub >n1/trusted
	PIDS=''
}

teardown() {
	local p
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	for p in $PIDS; do wait "$p" 2>/dev/null || true; done
	[ -z "${MNT:-}" ] || umount "$MNT" 2>/dev/null || true
}

# lines FILE N: FILE has at least N lines.
lines() {
	[ "$(wc -l <"$1")" -ge "$2" ]
}

@test "DIR/events rotates at GOSSIP_LOG_MAX; watch follows it: every event once, in order" {
	export GOSSIP_LOG_MAX=2048
	mkfifo feed
	gossip-peers -d n1 observe <feed 2>observe.err & PIDS="$PIDS $!"
	exec 5>feed
	gossip-peers -d n1 -j watch >watched 2>watch.err & PIDS="$PIDS $!"
	wait_for 5 grep -q nanosleep "/proc/$!/wchan"
	# Batches of 8 (under half a file): watch reads between them, as a node's watch does
	# (it reads ten times a second).
	local i total=0
	for batch in $(seq 1 20); do
		for i in $(seq 1 8); do
			gossip-peers -d n1 announce -a udp://127.0.0.1:9 -t "n=$((batch * 100 + i))" >&5
		done
		total=$((total + 8))
		wait_for 10 lines watched "$total" || fail "batch $batch: watch printed $(wc -l <watched) of $total"
	done
	exec 5>&-
	[ -e n1/events.1 ] || fail "no n1/events.1"
	[ "$(stat -c %s n1/events)" -le 2048 ] || fail "n1/events is $(stat -c %s n1/events) bytes"
	[ "$(stat -c %s n1/events.1)" -le 2048 ] || fail "n1/events.1 is $(stat -c %s n1/events.1) bytes"
	# Each announce once: the first a join, then one update per tag, none twice or missing.
	[ "$(wc -l <watched)" = "$total" ] || fail "watch printed $(wc -l <watched) events, not $total"
	jq -r .tags watched >tags
	for batch in $(seq 1 20); do for i in $(seq 1 8); do echo "n=$((batch * 100 + i))"; done; done >want
	diff want tags || fail "watch did not print each event once, in order"
	[ "$(jq -r .event watched | sort | uniq -c | tr -s ' ')" = "$(printf ' 1 member-join\n %d member-update' $((total - 1)))" ]
	[ ! -s watch.err ] || fail "watch warned: $(cat watch.err)"
	# -A reads events.1 and then events, and stops at the end like any pass.
	gossip-peers -d n1 -j -A watch >all & PIDS="$PIDS $!"
	local n=$(( $(cbor_count n1/events.1) + $(cbor_count n1/events) ))
	wait_for 5 lines all "$n"
	jq -r .tags all >alltags
	[ "$(tail -n "$n" tags)" = "$(cat alltags)" ] || fail "watch -A: not events.1 then events"
}
