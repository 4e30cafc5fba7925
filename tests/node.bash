# node.bash: a whole node composed from the programs, for the multi-node tests (the
# composition gossip-node makes): receive, store, observe membership, pass rumors on to
# K random live members; heartbeats on a timer; a sync server; anti-entropy on a timer.
# Every process a node starts is in its own process group, so node_kill stops them all.

HB=${HB:-0.2}          # heartbeat interval, seconds
HB_MS=${HB_MS:-200}    # the same in ms, for phi
JITTER=${JITTER:-0}    # heartbeat jitter, a fraction of the interval
FANOUT=${FANOUT:-3}

# node_start NAME UDPPORT SYNCPORT [SEED_SYNCPORT] [extra announce args...]
node_start() {
	local n=$1 port=$2 sport=$3 seed=${4:-}
	shift 4 2>/dev/null || shift $#
	[ -f "$T/$n/key" ] || gossip-keygen -d "$T/$n" -n "$n" >/dev/null
	gossip-peers -d "$T/$n" announce -a "udp://127.0.0.1:$port" -a "tcp://127.0.0.1:$sport" "$@" |
		gossip-merge -d "$T/$n" >/dev/null
	# Detached (no job-control noise when it is killed); its process group id comes back
	# through a file: the session leader's pid.
	rm -f "$T/$n.pgid"
	(setsid sh -c "echo \$\$ >$T/$n.pgid

		socat TCP-LISTEN:$sport,bind=127.0.0.1,reuseaddr,fork EXEC:'gossip-merge -d $T/$n serve' 2>/dev/null &
		gossip-listen -q -d $T/$n udp://127.0.0.1:$port 2>>$T/$n.log |
			gossip-merge --verified -d $T/$n 2>>$T/$n.log |
			gossip-peers -d $T/$n -T -i $HB_MS observe 2>>$T/$n.log |
			gossip-send -d $T/$n -k $FANOUT -M 2>>$T/$n.log &
		gossip-peers -d $T/$n beat -e $HB -J $JITTER | gossip-send -d $T/$n -k $FANOUT -M 2>>$T/$n.log &
		while sleep 1; do
			peer=\$(gossip-peers -d $T/$n -s pick 2>/dev/null) &&
				gossip-merge -d $T/$n -t 2 sync \"\$peer\" 2>/dev/null | gossip-send -d $T/$n -k $FANOUT -M 2>/dev/null
		done &
		wait" </dev/null >/dev/null 2>&1 3>&- &)
	for _ in $(seq 1 100); do [ -s "$T/$n.pgid" ] && break; sleep 0.01; done
	eval "PGID_$n=$(cat "$T/$n.pgid")"
	NODES="${NODES:-} $n"
	if [ -n "$seed" ]; then
		for _ in $(seq 1 50); do
			gossip-peers -d "$T/$n" join "tcp://127.0.0.1:$seed" 2>/dev/null && break
			sleep 0.1
		done
	fi
}

# node_kill NAME [SIGNAL]: signal every process of the node (default: kill -9, after
# which the node is gone; STOP and CONT pause and resume it).
node_kill() {
	local pg sig=${2:-9}
	eval "pg=\${PGID_$1:-}"
	[ -n "$pg" ] && kill -"$sig" -- "-$pg" 2>/dev/null
	[ "$sig" = 9 ] && eval "PGID_$1="
	return 0
}

nodes_stop() {
	for n in ${NODES:-}; do node_kill "$n" CONT; node_kill "$n" 9; done
	NODES=
}

# state_of OBSERVER NAME: NAME's state in OBSERVER's table.
state_of() {
	gossip-peers -d "$T/$1" -j list 2>/dev/null | jq -r --arg n "$2" 'select(.name == $n) | .state'
}

# wait_until SECONDS COMMAND...: poll until the command succeeds.
wait_until() {
	local limit=$1
	shift
	local end=$(($(date +%s%N) / 1000000 + limit * 1000))
	while [ $(($(date +%s%N) / 1000000)) -lt $end ]; do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

freeports() {
	/usr/bin/python3 - "$1" <<'PY'
import socket, sys
got, socks = [], []
while len(got) < int(sys.argv[1]):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
    except OSError:
        continue
    socks += [t, u]; got.append(p)
print(" ".join(map(str, got)))
PY
}
