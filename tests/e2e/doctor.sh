# shellcheck shell=sh
# Assertions on `mailtable doctor` reports, shared by the doctor tests
# (test-doctor.sh on this host, test-doctor-24.sh in the Debian 13 tree).
# Source after lib.sh and e2e_setup. The test defines
#
#   doctor [ARGS...]   run `mailtable doctor ... ARGS` its way, leaving the
#                      exit status in $RC and the report in $REPORT
#
# and then calls
#
#   expect_ok WHAT                          exit 0, no FAIL line
#   expect_problem WHAT CHECK FIX [ARGS...] exit 1, a `FAIL CHECK ...` line
#                                           whose fix contains FIX
#   doctor_fail MESSAGE                     print MESSAGE and the report, exit 1
#
# Each prints one `ok   ...` line when it holds.

REPORT=$E2E_DIR/doctor.out

doctor_fail() {
	echo "FAIL: $*"
	echo "----- doctor's report -----"
	cat "$REPORT"
	exit 1
}

expect_ok() { # WHAT [doctor options]
	_what=$1; shift
	doctor "$@"
	[ "$RC" = 0 ] || doctor_fail "$_what: doctor exited $RC, want 0"
	! grep -q '^FAIL' "$REPORT" || doctor_fail "$_what: a FAIL line"
	echo "ok   $_what: doctor exits 0 ($(tail -n1 "$REPORT"))"
}

expect_problem() { # WHAT CHECK FIX-SUBSTRING [doctor options]
	_what=$1; _check=$2; _fix=$3; shift 3
	doctor "$@"
	[ "$RC" = 1 ] || doctor_fail "$_what: doctor exited $RC, want 1"
	_line=$(grep "^FAIL $_check " "$REPORT" || true)
	[ -n "$_line" ] || doctor_fail "$_what: no FAIL line for $_check"
	case $_line in
	*"-- fix: "*"$_fix"*) ;;
	*) doctor_fail "$_what: $_check does not say the fix '$_fix'" ;;
	esac
	echo "ok   $_what: exit 1, $_check -- fix: ${_line#*-- fix: }"
}
