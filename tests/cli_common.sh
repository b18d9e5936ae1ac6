# Sourced by the CLI test scripts in tests/cli/: the binary, a scratch folder removed on
# exit, and the PASS/FAIL/SKIP lines that tests/run_tests.sh counts.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD=${BUILD:-build}
M="$BUILD/moelab"
T=$(mktemp -d)
trap 'chmod -R u+rwX "$T" 2>/dev/null; rm -rf "$T"' EXIT
fails=0
pass() { echo "PASS $1"; }
fail() {
    echo "FAIL $1: $2"
    fails=$((fails + 1))
}
skip() { echo "SKIP $1: $2 -- NOT TESTED"; }
# The scripts run the CLI many times: without this, OpenMP's spinning threads slow
# every run many-fold when the machine is busy. Results do not depend on it.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
require_binary() {
    if [ ! -x "$M" ]; then
        echo "FAIL $1: $M is not built"
        exit 1
    fi
}
# A small English-like text, the same in every test script that needs one.
make_prose() {
    awk -v n="${2:-1400}" 'BEGIN { split("the router sends each token to its top experts while the load stays balanced", w, " ");
        for (i = 1; i <= n; i++) { printf "The %s %s %s and %s the %s, line %d.\n", w[i%12+1], w[(i*7)%12+1],
            w[(i*3)%12+1], w[(i*5)%12+1], w[(i*11)%12+1], i; if (i % 40 == 0) print "" } }' >"$1"
}
