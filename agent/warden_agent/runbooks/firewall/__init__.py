"""nft-apply, nft-revert, nft-block, nft-unblock, nft-rate-limit, nft-remove-rate-limit.

nft-apply/nft-revert change the whole ruleset from a reviewed file and back from a snapshot.
The others touch only Warden's own table, `table inet warden`: two address sets (IPv4, IPv6;
elements expire on their own) and an input chain that drops their sources, plus rate-limit
rules found again by their comment. Every change is one `nft -f` transaction: it applies
entirely or not at all.

Modules by job: table (Warden's own table: its sets, chain and rules, read and changed),
blocks (nft-block, nft-unblock), rate_limits (nft-rate-limit, nft-remove-rate-limit),
ruleset (nft-apply, nft-revert: the whole ruleset from a file and back from a snapshot).
"""
