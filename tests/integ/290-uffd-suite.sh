#!/bin/bash
# pch-uffd-suite --quick: every userfaultfd case briefly, on every memory
# kind it applies to.  Fails on any "not ok"; lists the skips and why.
# timeout: 120
. "$(dirname "$0")/../lib/common.sh"
require_uffd

S="$BIN/pch-uffd-suite"
[ -x "$S" ] || fail "$S not built"

rc=0
timeout -k 5 100 "$S" --quick --json "$T/suite.json" >"$T/suite.ktap" 2>"$T/suite.log" || rc=$?
cat "$T/suite.ktap"

grep -q '^KTAP version 1$' "$T/suite.ktap" || fail "no KTAP header"
totals=$(grep '^# Totals: ' "$T/suite.ktap" | tail -n 1)
[ -n "$totals" ] || fail "no totals line (suite exited $rc)"
nplan=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$T/suite.ktap" | head -n 1)
nres=$(grep -cE '^(not )?ok [0-9]+ ' "$T/suite.ktap" || true)
[ "$nplan" = "$nres" ] || fail "plan 1..$nplan but $nres results"
jq -e '(.cases | length) == '"$nres" "$T/suite.json" >/dev/null || fail "JSON report incomplete"
# the lat/ cases' table, before the Totals line, and in the JSON
grep -q '^# latency: fault round trip in us, p50/p99/max' "$T/suite.ktap" ||
	fail "no latency table"
[ "$(tail -n 1 "$T/suite.ktap")" = "$totals" ] || fail "the Totals line is not the last line"
jq -e '.latency.rows["copy/anon"].poll.p50 > 0' "$T/suite.json" >/dev/null ||
	fail "no latency table in the JSON"

if grep -q '^not ok ' "$T/suite.ktap"; then
	grep -B1 '^not ok ' "$T/suite.ktap" >&2
	fail "$(grep -c '^not ok ' "$T/suite.ktap") case(s) failed"
fi
[ "$rc" -eq 0 ] || fail "pch-uffd-suite exited $rc with no failed case"

nskip=$(grep -c ' # SKIP ' "$T/suite.ktap" || true)
if [ "$nskip" -gt 0 ]; then
	log "skipped ($nskip):"
	grep ' # SKIP ' "$T/suite.ktap" | sed 's/^ok [0-9]* /  /'
fi
log "ok: ${totals#\# }"
