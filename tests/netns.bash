# netns.bash: hosts for fault tests and benchmarks, each a network namespace with eth0 on
# one bridge. Nothing is routed out: the addresses (10.222.0.0/24) exist only in these
# namespaces. Needs root (CI runs as root), iproute2 and, for faults, nftables.

# net_ok: whether this machine lets us make namespaces; else says why on stdout.
net_ok() {
	[ "$(id -u)" = 0 ] || { echo "needs root for network namespaces"; return 1; }
	command -v ip >/dev/null || { echo "needs iproute2 (./bootstrap installs it)"; return 1; }
	command -v nft >/dev/null || { echo "needs nftables (./bootstrap installs it)"; return 1; }
	ip netns add "gossip-probe-$$" 2>/dev/null || { echo "cannot create network namespaces here"; return 1; }
	ip netns del "gossip-probe-$$"
}

# net_up PREFIX N: namespaces PREFIX-hub (bridge br0) and PREFIX-1 .. PREFIX-N, host i
# at 10.222.0.i/24 on its eth0.
net_up() {
	local p=$1 i
	ip netns add "$p-hub" || return 1
	ip -n "$p-hub" link add br0 type bridge || return 1
	ip -n "$p-hub" link set br0 up
	for i in $(seq 1 "$2"); do
		ip netns add "$p-$i" &&
			ip -n "$p-hub" link add "v$i" type veth peer name eth0 netns "$p-$i" &&
			ip -n "$p-hub" link set "v$i" master br0 up &&
			ip -n "$p-$i" addr add "10.222.0.$i/24" dev eth0 &&
			ip -n "$p-$i" link set eth0 up &&
			ip -n "$p-$i" link set lo up || return 1
	done
}

# net_down PREFIX: kill whatever still runs in the namespaces and delete them.
net_down() {
	local ns
	for ns in $(ip netns list | awk '{print $1}' | grep "^$1-"); do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	return 0
}

# net_tx PREFIX I: bytes host I has sent on eth0.
net_tx() {
	ip netns exec "$1-$2" cat /sys/class/net/eth0/statistics/tx_bytes
}

# net_nft PREFIX I RULESET: load an nftables ruleset in host I.
net_nft() {
	printf '%s\n' "$3" | ip netns exec "$1-$2" nft -f -
}
