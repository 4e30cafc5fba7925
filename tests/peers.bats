#!/usr/bin/env bats
# gossip-peers on real nodes on loopback (gossip-node, through tests/node.bash): joining,
# failure detection, restart, leave, false positives, pick, leader, handlers, reputation
# and partitions.
load helper
load node

I="$BATS_TEST_DIRNAME/interop.py"

setup() {
	base_setup
	NODES=
	for n in n1 n2 n3 n4 n5 n6; do gossip-keygen -d "$T/$n" -n $n >"$n.pub"; done
	for n in n1 n2 n3 n4 n5 n6; do cat n?.pub >"$n/trusted"; done
	set -- $(freeports 12)
	PORTS=("$@")
}

teardown() {
	nodes_stop
	[ -z "${WATCH:-}" ] || kill $WATCH 2>/dev/null || true
}

# start_cluster N [tags for n2 and n4...]: nodes n1..nN, each joining n1.
start_cluster() {
	local count=$1 i
	node_start n1 "${PORTS[0]}" ""
	for i in $(seq 2 "$count"); do
		local extra=()
		[ "$i" = 2 ] || [ "$i" = 4 ] && extra=(-t leader=eligible)
		node_start "n$i" "${PORTS[$i - 1]}" "${PORTS[0]}" "${extra[@]}"
	done
	wait_until 20 all_alive "$count" || fail "not all alive: $(for n in $NODES; do echo "== $n"; gossip-peers -d $T/$n list; done)"
}

# all_alive N: every node's table holds N alive members.
all_alive() {
	for n in $NODES; do
		[ "$(gossip-peers -d "$T/$n" -j list 2>/dev/null | jq -r .state | grep -c '^alive$')" = "$1" ] || return 1
	done
}

# all_see STATE NAME: every other running node sees NAME in STATE.
all_see() {
	for n in $NODES; do
		[ "$n" = "$2" ] && continue
		[ "$(state_of "$n" "$2")" = "$1" ] || return 1
	done
}

events() { gossip-peers -d "$T/$1" -j -A watch & local w=$!; sleep 0.5; kill $w; }

@test "five nodes join and all see all alive; pick never gives self or the dead; one leader" {
	start_cluster 5
	for n in $NODES; do
		self=$(gossip-peers -d "$T/$n" -j list | jq -r 'select(.self) | .addrs[0]')
		for _ in $(seq 1 30); do gossip-peers -d "$T/$n" -n 10 pick; done >picked
		[ "$(wc -l <picked)" -ge 120 ]
		! grep -qx "$self" picked || fail "$n picked itself"
		[ "$(sort -u picked | wc -l)" = 4 ]
	done
	# Every node names the same leader: the lowest key among those tagged eligible.
	for n in $NODES; do gossip-peers -d "$T/$n" leader; done | sort -u >leaders
	[ "$(wc -l <leaders)" = 1 ]
	want=$(for n in n2 n4; do cut -d' ' -f1 $n.pub | base64 -d | od -An -tx1 | tr -d ' \n'; echo " $n"; done | sort | head -1 | cut -d' ' -f2)
	[ "$(cut -d' ' -f1 leaders)" = "$want" ]
	gossip-peers -d "$T/n1" -j leader | jq -e '.tags.leader == "eligible"'
}

@test "kill -9: suspect, then dead at every other node within the bound; restarted, alive again" {
	start_cluster 5
	t0=$(date +%s%N)
	node_kill n3
	# The bound: phi 8 on 200 ms heartbeats, then max(1, log10 N) intervals (gossip-node -S 1).
	wait_until 8 all_see dead n3 ||
		fail "not dead everywhere: $(for n in n1 n2 n4 n5; do echo "$n: $(state_of $n n3)"; tail -3 $n.log
			[ "$(state_of $n n3)" = dead ] || { gossip-inspect --diag $T/$n/peers; events $n | jq -c '[.time, .event, .name]'; }; done)"
	elapsed=$(( ($(date +%s%N) - t0) / 1000000 ))
	echo "# detected in $elapsed ms" >&3
	for n in n1 n2 n4 n5; do
		events $n | jq -r 'select(.name == "n3") | .event' >ev
		grep -q member-suspect ev && grep -q member-failed ev || fail "$n: $(cat ev)"
		[ "$(grep -n member-suspect ev | head -1 | cut -d: -f1)" -lt "$(grep -n member-failed ev | tail -1 | cut -d: -f1)" ]
	done
	# pick now leaves n3 out, but for the documented reconnect chance.
	dead=$(gossip-peers -d "$T/n1" -j list | jq -r 'select(.name == "n3") | .addrs[0]')
	for _ in $(seq 1 100); do gossip-peers -d "$T/n1" pick; done >picked
	[ "$(grep -cx "$dead" picked)" -lt 30 ]
	node_start n3 "${PORTS[2]}" "${PORTS[0]}"
	wait_until 10 all_see alive n3
}

@test "a leave is seen as left, not failed" {
	start_cluster 4
	gossip-peers -d "$T/n4" leave >/dev/null
	node_kill n4
	NODES=" n1 n2 n3"
	wait_until 5 all_see left n4
	sleep 2   # longer than it takes to be declared dead
	all_see left n4
	for n in n1 n2 n3; do
		events $n | jq -r 'select(.name == "n4") | .event' >ev
		grep -q member-leave ev && ! grep -q member-failed ev
	done
}

@test "no false positive in a minute of jittered heartbeats" {
	JITTER=0.3 start_cluster 5
	sleep 60
	for n in $NODES; do
		events $n | jq -r .event >ev
		! grep -q "member-suspect\|member-failed" ev || fail "$n: $(events $n)"
	done
}

@test "a handler runs on each event with the right variables and the members on stdin" {
	start_cluster 3
	cat >handler <<'SH'
#!/bin/sh
echo "$GOSSIP_EVENT $GOSSIP_MEMBER_NAME $GOSSIP_MEMBER_STATE $GOSSIP_MEMBER_TAGS members=$(wc -l)" >>"$(dirname "$0")/handled"
SH
	chmod +x handler
	gossip-peers -d "$T/n1" -x "$T/handler" watch >/dev/null & WATCH=$!
	sleep 0.3
	node_start n4 "${PORTS[3]}" "${PORTS[0]}"
	wait_until 10 grep -q "^member-join n4 alive" handled
	gossip-peers -d "$T/n4" announce -a "udp://127.0.0.1:${PORTS[3]}" -a "tcp://127.0.0.1:${PORTS[3]}" -t role=db |
		gossip-merge -d "$T/n4" | gossip-send -d "$T/n4" -M
	wait_until 10 grep -q "^member-update n4 alive role=db" handled
	gossip-peers -d "$T/n4" leave >/dev/null
	wait_until 10 grep -q "^member-leave n4 left role=db" handled
	node_kill n2
	wait_until 10 grep -q "^member-failed n2 dead" handled || fail "$(cat handled)"
	grep -q "members=4$" handled
}

@test "reputation: a peer whose own signatures prove it misbehaves is not picked, and list says why" {
	# n1 lets n3 write only its membership keys and app/.
	k3=$(cut -d' ' -f1 n3.pub)
	sed -i "s|^$k3|prefix=app/,prefix=_ $k3|" n1/trusted
	start_cluster 3
	# Forgeries under n3's key prove nothing and cost it nothing.
	kid=$(echo "$k3" | base64 -d | od -An -tx1 | tr -d ' \n')
	for i in $(seq 1 8); do
		$PY "$I" make 0505050505050505050505050505050505050505050505050505050505050505 --kid "$kid" --key "f$i" --version $((i + 1))
	done >forged
	$PY - "${PORTS[0]}" forged <<'PY'
import cbor2, io, socket, sys
data = open(sys.argv[2], "rb").read(); f = io.BytesIO(data); dec = cbor2.CBORDecoder(f)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
while f.tell() < len(data):
    start = f.tell(); dec.decode(); s.sendto(data[start:f.tell()], ("127.0.0.1", int(sys.argv[1])))
PY
	wait_until 10 grep -q "bad signature" n1/rejects
	! grep -q " $k3 " n1/rejects
	# Eight keys outside its prefix=, each signed by n3 itself: proven, charged.
	for i in $(seq 1 8); do gossip-send -d n3 -t "udp://127.0.0.1:${PORTS[0]}" set "f$i" x; done
	wait_until 10 sh -c "gossip-peers -d $T/n1 list | grep -q 'not picked: score'"
	gossip-peers -d "$T/n1" list | grep "^n3 " | grep -q "key not allowed"
	bad=$(gossip-peers -d "$T/n1" -j list | jq -r 'select(.name == "n3") | .addrs[0]')
	for _ in $(seq 1 50); do gossip-peers -d "$T/n1" pick; done >picked
	! grep -qx "$bad" picked
}

@test "many members suspect at once: a suspected partition, reported, then healed" {
	start_cluster 5
	# Two of n1's four peers fall silent at once (stopped, not killed): 50% >= 30%.
	node_kill n4 STOP
	node_kill n5 STOP
	wait_until 15 sh -c "gossip-peers -d $T/n1 list | grep -q '^partition suspected'"
	gossip-peers -d "$T/n1" -j list | jq -se 'map(select(.partition_suspected_since)) | length == 1'
	events n1 | jq -r .event | grep -q partition-suspected
	grep -q "partition-suspected" n1.log
	node_kill n4 CONT
	node_kill n5 CONT
	wait_until 15 all_see alive n4
	wait_until 15 all_see alive n5
	wait_until 10 sh -c "! gossip-peers -d $T/n1 list | grep -q '^partition suspected'"
	events n1 | jq -r .event | grep -q partition-healed
}

@test "bad peer files: a corrupt table is one clear error; a corrupt event log is skipped" {
	echo garbage >n1/peers
	run --separate-stderr gossip-peers -d "$T/n1" list
	assert_failure 2
	assert_error gossip-peers "n1/peers is not a peer table (gossip-peers observe writes it)"
	run --separate-stderr gossip-peers -d "$T/n1" pick
	assert_failure 2
	rm n1/peers
	printf '\377\377\034\377' >n1/events   # breaks and a reserved head: not CBOR at all
	gossip-peers -d "$T/n1" -A watch >watched 2>watch.err & WATCH=$!
	gossip-peers -d "$T/n1" announce -a udp://127.0.0.1:9 | gossip-peers -d "$T/n1" observe
	wait_until 5 grep -q "member-join n1" watched
	grep -q "events: .*n1/events is corrupt before offset" watch.err
	# And the table that observe wrote reads back.
	gossip-peers -d "$T/n1" -j list | jq -e '.name == "n1" and .self and .state == "alive"'
}

@test "JSON from list and watch stays valid whatever names, addresses and tags hold" {
	gossip-peers -d "$T/n1" announce -a udp://127.0.0.1:9 -t 'note=say"hi\' |
		gossip-peers -d "$T/n1" observe
	gossip-peers -d "$T/n1" -j list | jq -e '.tags.note == "say\"hi\\" and .addrs == ["udp://127.0.0.1:9"]'
	gossip-peers -d "$T/n1" -j -A watch >watched & WATCH=$!
	wait_until 5 grep -q member-join watched
	jq -e '.event == "member-join" and .name == "n1" and .tags == "note=say\"hi\\"' watched
}

@test "a member that announces itself but never beats is declared dead after its grace period" {
	start_cluster 2
	# n3 joins (its record reaches the others) but runs nothing: no heartbeat, ever.
	gossip-peers -d "$T/n3" announce -a "udp://127.0.0.1:${PORTS[2]}" -a "tcp://127.0.0.1:${PORTS[2]}" |
		gossip-merge -d "$T/n3" >/dev/null
	gossip-peers -d "$T/n3" join "tcp://127.0.0.1:${PORTS[0]}"
	# Grace 10 intervals + pause (2.4 s), suspicion 0.2 s, a store scan a second.
	wait_until 10 sh -c "[ \"\$(gossip-peers -d $T/n1 -j list | jq -r 'select(.name == \"n3\") | .state')\" = dead ]"
	events n1 | jq -r 'select(.name == "n3") | .event' | tr '\n' ' ' >ev
	# Suspect here first, or dead at once when another member's dead claim came first.
	case $(cat ev) in
	"member-join member-suspect member-failed " | "member-join member-failed ") ;;
	*) fail "$(cat ev)" ;;
	esac
}
