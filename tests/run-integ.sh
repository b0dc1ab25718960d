#!/bin/sh
# Run the integration tests (tests/integ/NNN-*.sh), each under a timeout that
# fails it loudly.  A test's timeout is its "# timeout: N" line (default 120 s).
# Usage: tests/run-integ.sh [PATTERN]
BUILD=${BUILD:-build}
export BUILD
pass=0 failn=0 skipn=0 failed=""
for t in tests/integ/[0-9]*.sh; do
	[ -e "$t" ] || continue
	case "$t" in *${1:-}*) ;; *) continue ;; esac
	name=$(basename "$t" .sh)
	tmo=$(sed -n 's/^# timeout: *\([0-9]*\).*/\1/p' "$t" | head -n 1)
	tmo=${tmo:-120}
	start=$(date +%s%N)
	out=$(timeout -k 10 "$tmo" bash "$t" 2>&1)
	rc=$?
	ms=$(( ($(date +%s%N) - start) / 1000000 ))
	case $rc in
	0) pass=$((pass + 1)); printf 'PASS %-32s %d.%03ds\n' "$name" $((ms / 1000)) $((ms % 1000)) ;;
	77) skipn=$((skipn + 1)); printf 'SKIP %-32s %s\n' "$name" "$(echo "$out" | grep SKIP | tail -n 1)" ;;
	124|137) failn=$((failn + 1)); failed="$failed $name"
		printf 'FAIL %-32s TIMEOUT after %ss\n' "$name" "$tmo"; echo "$out" | tail -n 40 ;;
	*) failn=$((failn + 1)); failed="$failed $name"
		printf 'FAIL %-32s exit %d\n' "$name" "$rc"; echo "$out" | tail -n 60 ;;
	esac
done
echo "integration: $pass passed, $failn failed, $skipn skipped"
[ -n "$failed" ] && echo "failed:$failed"
[ "$failn" -eq 0 ]
