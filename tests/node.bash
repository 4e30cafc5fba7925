# node.bash: whole nodes for the multi-node tests, each a gossip-node (which leads its
# own process group, so node_kill reaches every process of a node and nothing else).

HB=${HB:-0.2}          # probe interval (gossip-node -i), seconds
JITTER=${JITTER:-0.1}  # probe jitter, a fraction of the interval
FANOUT=${FANOUT:-3}
# Anti-entropy interval, seconds: 1, or helper.bash's slow under the sanitizers (a round
# starts the serving end and forks the other; at 1 s ten sanitized nodes kept two cores
# busy and took each other for dead). The benches and contrib/demo load this file
# without helper.bash.
SYNC=${SYNC:-$(if command -v slow >/dev/null 2>&1; then slow; else echo 1; fi)}

# inotify_room N: room for N nodes' directory watches (observe, watch and query answer
# each hold an inotify instance; a user may hold 128 by default): raised when lower and
# this runs as root, else a warning (without, the last nodes look by the clock).
inotify_room() {
	local f=/proc/sys/fs/inotify/max_user_instances need=$((3 * $1 + 128)) have
	have=$(cat "$f" 2>/dev/null) || return 0
	[ "$have" -lt "$need" ] || return 0
	if echo "$need" >"$f" 2>/dev/null; then
		echo "fs.inotify.max_user_instances raised from $have to $need for $1 nodes" >&2
	else
		echo "warning: fs.inotify.max_user_instances is $have; $1 nodes want $need" >&2
	fi
}

# node_ids N: identities n1..nN in $T (each public key line beside it, in n$i.pub), every
# one trusting all N.
node_ids() {
	local i
	for i in $(seq 1 "$1"); do gossip-keygen -d "$T/n$i" -n "n$i" >"$T/n$i.pub"; done
	for i in $(seq 1 "$1"); do cat "$T"/n*.pub >"$T/n$i/trusted"; done
}

# alive_everywhere: each of n1..n$N lists N members alive.
alive_everywhere() {
	local i
	for i in $(seq 1 $N); do
		[ "$(count_state "n$i" alive)" -ge $N ] || return 1
	done
}

# all_alive COUNT: each node in NODES lists COUNT members alive.
all_alive() {
	# shellcheck disable=SC2086
	sees "$1" alive $NODES
}

# node_start NAME PORT [SEED_PORT] [more gossip-node options...]: start NAME on
# 127.0.0.1:PORT (UDP and TCP), joining through the node at SEED_PORT (-p); return once
# it listens.
node_start() {
	node_spawn "$@" && node_listens "$1"
}

# node_spawn: node_start's arguments; starts the node and returns at once (node_listens
# waits), so that a cluster's nodes start side by side.
node_spawn() {
	local n=$1 port=$2 seed=${3:-}
	shift 3 2>/dev/null || shift $#
	rm -f "$T/$n/listening"
	gossip-node -d "$T/$n" -n "$n" -l "127.0.0.1:$port" ${seed:+-p "127.0.0.1:$seed"} \
		-i "$HB" -J "$JITTER" -k "$FANOUT" -s "$SYNC" "$@" </dev/null >/dev/null 2>>"$T/$n.log" 3>&- &
	# Known before it is waited for, so that nodes_stop stops it whatever happens.
	eval "PGID_$n=$!"
	NODES="${NODES:-} $n"
}

# node_listens NAME...: wait (10 s at most) until each node listens; a node that ended
# or did not is an error, with its log.
node_listens() {
	local n pid
	for n in "$@"; do
		eval "pid=\${PGID_$n:-}"
		for _ in $(seq 1 200); do
			[ -s "$T/$n/listening" ] && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		[ -s "$T/$n/listening" ] || { cat "$T/$n.log" >&2; return 1; }
	done
}

# node_kill NAME [SIGNAL]: signal every process of the node (default: kill -9, after
# which the node is gone; STOP and CONT pause and resume it; TERM makes it leave).
node_kill() {
	local pg sig=${2:-9}
	eval "pg=\${PGID_$1:-}"
	[ -n "$pg" ] || return 0
	if [ "$sig" = TERM ]; then
		kill -TERM "$pg" 2>/dev/null
		for _ in $(seq 1 100); do kill -0 -- "-$pg" 2>/dev/null || break; sleep 0.05; done
		kill -9 -- "-$pg" 2>/dev/null || true
	else
		kill -"$sig" -- "-$pg" 2>/dev/null || true
	fi
	# A handler runs in a group of its own inside the node's session: it ends too.
	case $sig in 9 | TERM) session_kill " $pg " ;; esac
	case $sig in 9 | TERM) eval "PGID_$1=" ;; esac
	return 0
}

# wait_until SECONDS COMMAND...: run COMMAND every 0.05 s until it succeeds; false when it
# has not within SECONDS (whole seconds). For the benches; tests use wait_for, which fails
# the test.
wait_until() {
	local end=$((${EPOCHREALTIME/./} + $1 * 1000000))
	shift
	until "$@"; do
		[ "${EPOCHREALTIME/./}" -lt "$end" ] || return 1
		sleep 0.05
	done
}

nodes_stop() {
	# A failed test says where each node stood (CI shows only what a test printed).
	[ -z "${BATS_TEST_NAME:-}" ] || [ -n "${BATS_TEST_COMPLETED:-}" ] || nodes_diag
	local n pg sids=" "
	for n in ${NODES:-}; do
		eval "pg=\${PGID_$n:-}"
		[ -z "$pg" ] || { kill -CONT -- "-$pg"; kill -9 -- "-$pg"; sids="$sids$pg "; } 2>/dev/null
		eval "PGID_$n="
	done
	# Their handlers (groups of their own in the nodes' sessions): one look for all.
	[ "$sids" = " " ] || session_kill "$sids"
	NODES=
}

# nodes_diag: each running node's view of the members and the end of its log.
nodes_diag() {
	local n
	for n in ${NODES:-}; do
		echo "# == $n: $(gossip-peers -d "$T/$n" -j list 2>&1 | jq -r '"\(.name)=\(.state)"' 2>&1 | tr '\n' ' ')"
		tail -n 5 "$T/$n.log" 2>/dev/null | sed 's/^/#    /'
	done
	return 0
}

# session_kill " SID... ": kill -9 what still runs in the sessions SID (nodes': gossip-node
# leads one; no other process's session has its pid as id).
session_kill() {
	local sids=$1 f s
	for f in /proc/[0-9]*; do
		{ read -r s <"$f/stat"; } 2>/dev/null || continue
		# shellcheck disable=SC2086
		set -- ${s##*) }   # state, parent, group, session...
		# A process that ended since its stat was read cannot be killed: not a failure
		# (under bats' errexit, a kill that fails last in an && list ends the test).
		if [[ $sids == *" $4 "* ]]; then kill -9 "${f#/proc/}" 2>/dev/null || true; fi
	done
	return 0
}

# group_procs PGID: the processes of a process group that still run (not zombies), one
# "pid command line" each, from /proc (procps is not on every machine).
group_procs() {
	local pg=$1 f s a
	for f in /proc/[0-9]*; do
		{ read -r s <"$f/stat"; } 2>/dev/null || continue
		# shellcheck disable=SC2086
		set -- ${s##*) }   # after the command's name: state, parent, group...
		[ "$3" = "$pg" ] && [ "$1" != Z ] || continue
		{ mapfile -d '' -t a <"$f/cmdline"; } 2>/dev/null
		echo "${f#/proc/} ${a[*]}"
	done
	return 0
}

# dir_procs DIR: the processes that have DIR as an argument (a node's, whatever their
# group).
dir_procs() {
	local f a
	for f in /proc/[0-9]*; do
		{ mapfile -d '' -t a <"$f/cmdline"; } 2>/dev/null || continue
		[[ " ${a[*]} " == *" $1 "* ]] && echo "${f#/proc/} ${a[*]}"
	done
	return 0
}

# count_state NODE STATE: how many members NODE's table holds in STATE. By grep on
# gossip-peers' JSON lines (its fields come in a fixed order, without spaces), not jq: the
# waits run this for every node every 50 ms, beside the nodes, and one jq costs about
# 25 ms of CPU.
count_state() {
	gossip-peers -d "$T/$1" -j list 2>/dev/null | grep -c "\"state\":\"$2\""
}

# stats_sum DIR NAME: the counter NAME summed over the files of DIR/stats, as gossip-node
# status sums them: a write's temporary file (FILE.tmp.PID, renamed over FILE at any
# moment) is not read. A glob such as DIR/stats/* names one now and then, and awk (mawk)
# that finds it gone ends without printing the sum.
stats_sum() {
	find "$1/stats" -maxdepth 1 -type f ! -name '.*' ! -name '*.tmp.*' -exec cat {} + 2>/dev/null |
		awk -v k="$2" '$1 == k { s += $2 } END { print s + 0 }'
}

# sees COUNT STATE NODES...: each of NODES has COUNT members in STATE.
sees() {
	local count=$1 state=$2 n
	shift 2
	for n in "$@"; do
		[ "$(count_state "$n" "$state")" = "$count" ] || return 1
	done
}

# state_of OBSERVER NAME: NAME's state in OBSERVER's table (NAME as the tests name
# nodes: no character JSON escapes).
state_of() {
	gossip-peers -d "$T/$1" -j list 2>/dev/null | sed -n "s/.*\"name\":\"$2\",\"state\":\"\([a-z]*\)\".*/\1/p"
}

# all_see STATE NAME: every other node in NODES sees NAME in STATE.
all_see() {
	local n
	for n in $NODES; do
		[ "$n" = "$2" ] && continue
		[ "$(state_of "$n" "$2")" = "$1" ] || return 1
	done
}

# intervals N: N intervals of HB, in seconds: for periods derived from the interval.
intervals() {
	awk -v n="$1" -v i="$HB" 'BEGIN { print n * i }'
}

# detect_time N [MULT]: the seconds within which every member of a cluster of N nodes
# declares a killed member dead, by gossip-node's probes (gossip-peers(1), Probing): each
# member pings every other one within N-1 intervals (each off by up to JITTER of itself),
# the target is suspect three fifths of an interval after a ping, and dead after the
# suspicion timeout, MULT (gossip-node -S, default 0.8) times max(1, log10(N+1))
# intervals, or four times that when no other member confirms the suspicion.
detect_time() {
	awk -v n="$1" -v m="${2:-0.8}" -v i="$HB" -v j="$JITTER" 'BEGIN {
		s = log(n + 1) / log(10); if (s < 1) s = 1
		print ((n - 1) * (1 + j) + 0.6 + 4 * m * s) * i }'
}

# freeports N: N ports free for both UDP and TCP on 127.0.0.1, chosen at random below
# the kernel's ephemeral range, so that no outgoing socket takes one before its node
# binds it.
freeports() {
	/usr/bin/python3 - "$1" <<'PY'
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
got, socks = [], []
while len(got) < int(sys.argv[1]):
    p = random.randrange(10000, max(low, 10001))
    if p in got:
        continue
    t = socket.socket(); u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        t.bind(("127.0.0.1", p)); u.bind(("127.0.0.1", p))
    except OSError:
        continue
    socks += [t, u]; got.append(p)
print(" ".join(map(str, got)))
PY
}
