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

# flipbit FILE OFFSET: flip the low bit of one byte (always a change, unlike writing a
# fixed byte that may already be there). A negative OFFSET counts from the end.
flipbit() {
	$PY -c 'import sys
p, o = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read()); b[o] ^= 1; open(p, "wb").write(b)' "$1" "$2"
}
