#!/bin/sh
# Run every Check unit suite in $BUILD/tests/unit, each under a timeout.
BUILD=${BUILD:-build}
pass=0 failn=0 skipn=0
for t in "$BUILD"/tests/unit/test_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	out=$(CK_DEFAULT_TIMEOUT=60 timeout -k 5 300 "$t" 2>&1)
	rc=$?
	summary=$(echo "$out" | grep -E '^[0-9]+%: Checks' | tail -n 1)
	case $rc in
	0) pass=$((pass + 1)); printf 'PASS %-20s %s\n' "$name" "$summary" ;;
	77) skipn=$((skipn + 1)); printf 'SKIP %-20s %s\n' "$name" "$(echo "$out" | tail -n 1)" ;;
	*) failn=$((failn + 1)); printf 'FAIL %-20s exit %d\n' "$name" "$rc"; echo "$out" | tail -n 40 ;;
	esac
done
echo "unit: $pass passed, $failn failed, $skipn skipped"
[ "$failn" -eq 0 ]
