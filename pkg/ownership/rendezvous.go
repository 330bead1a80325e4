package ownership

import "hash/fnv"

// Owner returns the member that owns account under rendezvous
// (highest-random-weight) hashing: every member scores the account with a
// hash of (member, account) and the highest score wins, ties going to the
// smaller member id. It returns "" when members is empty.
//
// Adding a member moves to it exactly the accounts it now scores highest
// on (about 1/N of them) and moves nothing between the old members;
// removing a member moves only the accounts it owned. Every replica that
// sees the same member set computes the same owner, with no coordination.
func Owner(account string, members []string) string {
	best, bestWeight := "", uint64(0)
	for _, m := range members {
		w := weight(m, account)
		if best == "" || w > bestWeight || (w == bestWeight && m < best) {
			best, bestWeight = m, w
		}
	}
	return best
}

// weight is the score of (member, account): FNV-1a over both, separated by
// a zero byte, then the SplitMix64 finaliser, whose avalanche makes the
// scores of near-identical ids (replica-1, replica-2) independent.
func weight(member, account string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(member))
	h.Write([]byte{0})
	h.Write([]byte(account))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
