#!/bin/bash
# Channels connect in any order: the helper opens them in two different
# shuffled orders (CONTROL not first) and both migrations verify.
# timeout: 180
. "$(dirname "$0")/../lib/common.sh"
require_uffd

orders=""
for seed in 3 11; do
	new_key_dir=$T/s$seed
	mkdir -p "$new_key_dir"
	"$BIN/pch-migrate" --no-progress --keep --json "$T/r$seed.json" --ram 64M --channels 8 \
		--vcpus 2 --workload random --connect-order "shuffle:$seed" >"$T/m$seed.out" 2>&1 ||
		{ cat "$T/m$seed.out"; fail "migration with shuffle:$seed failed"; }
	expect_json "$T/r$seed.json" '.result == "ok" and .pages_mismatched == 0 and (.errors | length) == 0' '.errors'
	dir=$(sed -n 's/.*work dir \(\/tmp\/pch-migrate\.[A-Za-z0-9]*\).*/\1/p' "$T/m$seed.out" | head -n 1)
	[ -n "$dir" ] && [ -f "$dir/pch-helper.log" ] || fail "no helper log for shuffle:$seed"
	order=$(sed -n 's/.*connected \([A-Z]*\) channel \([0-9]*\) (.*/\1\2/p' "$dir/pch-helper.log" | tr '\n' ' ')
	rm -rf "$dir"
	[ "$(echo "$order" | wc -w)" -eq 10 ] || fail "expected 10 channels, saw: $order"
	case "$order" in CONTROL0\ URGENT0\ PAGES0\ *) fail "shuffle:$seed kept the natural order: $order" ;; esac
	log "shuffle:$seed connected: $order"
	orders="$orders|$order"
done
[ "$(echo "$orders" | cut -d'|' -f2)" != "$(echo "$orders" | cut -d'|' -f3)" ] || fail "both seeds gave one order"
