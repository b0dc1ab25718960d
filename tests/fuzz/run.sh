#!/bin/sh
# Run each libFuzzer harness in $BUILD/fuzz for $FUZZ_SECONDS on a copy of
# its seed corpus (tests/fuzz/corpus/NAME is never written to), and print
# its executions and exec/s.  Fails when a harness finds a crash.
#   run.sh probe    exit 0 when clang can link a libFuzzer harness
#   run.sh NAME...  run those harnesses
BUILD=${BUILD:-build}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_CC=${FUZZ_CC:-clang}

if [ "${1:-}" = probe ]; then
	command -v "$FUZZ_CC" >/dev/null 2>&1 || exit 1
	d=$(mktemp -d) || exit 1
	printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
		'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
		'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
		>"$d/probe.c"
	"$FUZZ_CC" -fsanitize=fuzzer -o "$d/probe" "$d/probe.c" >/dev/null 2>&1
	rc=$?
	rm -rf "$d"
	exit $rc
fi

failn=0
for name in "$@"; do
	bin=$BUILD/fuzz/$name
	work=$BUILD/fuzz/run/$name
	log=$BUILD/fuzz/run/$name.log
	rm -rf "$work" && mkdir -p "$work/corpus" "$work/artifacts" || exit 1
	cp tests/fuzz/corpus/"$name"/* "$work/corpus/" 2>/dev/null
	# -timeout: one input taking over 10 s is a hang, and a failure
	timeout -k 10 $((FUZZ_SECONDS + 60)) "$bin" -max_total_time="$FUZZ_SECONDS" \
		-timeout=10 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
		"$work/corpus" >"$log" 2>&1
	rc=$?
	done_line=$(grep -E '^Done [0-9]+ runs in' "$log" | tail -n 1)
	stat_line=$(grep -E '^#[0-9]+.*exec/s' "$log" | tail -n 1)
	if [ $rc -eq 0 ]; then
		printf 'PASS %-12s %s\n' "$name" "$done_line"
		printf '     %-12s %s\n' "" "$stat_line"
	else
		failn=$((failn + 1))
		printf 'FAIL %-12s exit %d; crash input in %s, log %s\n' "$name" $rc \
			"$work/artifacts" "$log"
		tail -n 40 "$log"
	fi
done
echo "fuzz: $# harnesses, $failn failed (${FUZZ_SECONDS} s each)"
[ $failn -eq 0 ]
