# helper.bash: shared setup for the bats files: a fresh temp dir per test, two nodes'
# state dirs on demand, and small checks on files. Loaded with `load helper`.
bats_require_minimum_version 1.5.0
bats_load_library bats-support
bats_load_library bats-assert

PY=${PYTHON3:-/usr/bin/python3}
DATA="$BATS_TEST_DIRNAME/data"

setup() {
	base_setup
}

# The start of every test: a fresh temp dir as $T and the working directory, and no
# state dir from the environment. Files that define their own setup call it first.
base_setup() {
	T="$BATS_TEST_TMPDIR"
	cd "$T" || return 1
	unset GOSSIP_DIR
}

# Two nodes, a and b, where b trusts a.
two_nodes() {
	mknode a
	mknode b
	trust b a
}

# mknode NAME: a state dir $T/NAME with a key named NAME.
mknode() {
	gossip-keygen -d "$T/$1" -n "$1" >"$T/$1.pub"
}

# trust A B: A trusts B.
trust() {
	cat "$T/$2.pub" >>"$T/$1/trusted"
}

# snapshot DIR: a fingerprint of every file (name, mode, content) under DIR, so a test
# can check that a failed command changed nothing.
snapshot() {
	(cd "$1" && find . -type f -print0 | sort -z |
		xargs -0 -r sh -c 'for f; do stat -c "%n %a" "$f"; sha256sum <"$f"; done' sh)
}

# After `run --separate-stderr`: exactly one line on stderr, "PROG: ...", containing TEXT.
assert_error() {
	local prog=$1 text=$2
	[ "${#stderr_lines[@]}" -eq 1 ] || fail "want one line on stderr, got: $stderr"
	[[ ${stderr_lines[0]} == "$prog: "* ]] || fail "stderr does not start with '$prog: ': $stderr"
	[[ ${stderr_lines[0]} == *"$text"* ]] || fail "stderr lacks '$text': $stderr"
}

# wait_for SECONDS COMMAND...: run COMMAND until it succeeds; when it has not within
# SECONDS (a fraction is fine), fail the test, naming the command. Between two tries it
# sleeps 0.05 s, or as long as the last try took when that was longer: a check that asks
# every node of a cluster costs tens of ms of CPU, and polled back to back it would take
# a core from the nodes it waits for. COMMAND runs with errexit off, as in any condition:
# a function given here must return its failures (`|| return 1`), not rely on errexit.
wait_for() {
	local limit=$1 end t0 took pause
	shift
	us_of "$limit" || fail "wait_for: $limit: want seconds"
	end=$((${EPOCHREALTIME//[!0-9]/} + REPLY))
	while :; do
		t0=${EPOCHREALTIME//[!0-9]/}
		"$@" && return 0
		took=$((${EPOCHREALTIME//[!0-9]/} - t0))
		[ "${EPOCHREALTIME//[!0-9]/}" -lt "$end" ] || break
		pause=$((took > 50000 ? took : 50000))
		printf -v pause '%d.%06d' $((pause / 1000000)) $((pause % 1000000))
		sleep "$pause"
	done
	fail "timed out after $limit s waiting for: $*"
}

# us_of SECONDS: SECONDS (such as 2, 0.5 or 1.25) in microseconds, in REPLY.
us_of() {
	local s=${1%%.*} f=
	if [[ $1 == *.* ]]; then f=${1#*.}; fi
	[[ $s$f =~ ^[0-9]+$ ]] || return 1
	f=${f}000000
	REPLY=$((10#${s:-0} * 1000000 + 10#${f:0:6}))
}

# cbor_count FILE: the number of whole CBOR items FILE begins with (0 when there is no
# FILE): messages, store records, events; a torn or corrupt tail is not counted.
cbor_count() {
	$PY - "$1" <<'PY'
import cbor2, io, os, sys
data = open(sys.argv[1], "rb").read() if os.path.exists(sys.argv[1]) else b""
f = io.BytesIO(data); dec = cbor2.CBORDecoder(f); n = 0
while f.tell() < len(data):
    try:
        dec.decode(); n += 1
    except Exception:
        break
print(n)
PY
}

# flipbit FILE OFFSET: flip the low bit of one byte (always a change, unlike writing a
# fixed byte that may already be there). A negative OFFSET counts from the end.
flipbit() {
	$PY -c 'import sys
p, o = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read()); b[o] ^= 1; open(p, "wb").write(b)' "$1" "$2"
}

# offsets FILE: the offset of each CBOR item in FILE, one a line, then the file's size.
offsets() {
	$PY - "$1" <<'PY'
import cbor2, io, sys
d = open(sys.argv[1], "rb").read(); f = io.BytesIO(d); dec = cbor2.CBORDecoder(f)
while f.tell() < len(d):
    print(f.tell()); dec.decode()
print(len(d))
PY
}

# quiet COMMAND...: COMMAND with its output and errors discarded (for wait_for).
quiet() {
	"$@" >/dev/null 2>&1
}

# tcp_open PORT: something accepts connections on 127.0.0.1:PORT.
tcp_open() {
	$PY -c "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])))" "$1" 2>/dev/null
}

# count_lines TEXT FILE: how many lines of FILE hold TEXT (0 when there is no FILE).
count_lines() {
	grep -c -- "$1" "$2" 2>/dev/null || true
}

# more_lines TEXT FILE N: more than N lines of FILE hold TEXT.
more_lines() {
	[ "$(count_lines "$1" "$2")" -gt "$3" ]
}

# hup PID LOG PROG: SIGHUP to PID; return once LOG has one more "PROG: reloaded" line.
hup() {
	local n
	n=$(count_lines "^$3: reloaded: " "$2")
	kill -HUP "$1"
	wait_for 5 more_lines "^$3: reloaded: " "$2" "$n"
}

# under_asan: the programs were built with the sanitizers (./configure
# --enable-sanitizers): ASan reserves terabytes of address space for its shadow memory,
# so a test must not bound the address space (ulimit -v) around them.
under_asan() {
	ldd "$(command -v gossip-query)" 2>/dev/null | grep -q libasan
}

# slow: how many times a test of many nodes stretches the intervals that start processes
# (anti-entropy: a round starts the serving end and forks the other): 4 under the
# sanitizers, where a process's start and its leak check at exit cost about ten times the
# CPU (0.1 s against 0.01 s here); at the usual intervals ten such nodes keep two cores
# busy, and a starved node is taken for dead.
slow() {
	if under_asan; then echo 4; else echo 1; fi
}

# slow_times SECONDS: SECONDS (a decimal) times slow, for intervals a test stretches
# under the sanitizers.
slow_times() {
	awk -v x="$1" -v s="$(slow)" 'BEGIN { print x * s }'
}
