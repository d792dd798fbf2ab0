#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# kselftest entry point: the LVS testbed's conformance suite on the running kernel
# (natively: the kernel under test has IPVS). KTAP on stdout; exit 0 pass, 1 fail,
# 4 skip (KSFT_SKIP: not root, no IPVS, no testbed checkout).
#   LVS_TESTBED  the testbed checkout (default: two levels up from this script)
#   LVS_PROFILE  the suite profile (default smoke; full for every test)
ksft_skip=4
here=$(cd "$(dirname "$0")" && pwd -P)  # through a symlink into a kernel tree
checkout=${LVS_TESTBED:-$(cd "$here/../.." && pwd)}

if [ "$(id -u)" != 0 ]; then
	echo "SKIP: the LVS testbed needs root"; exit $ksft_skip
fi
if [ ! -x "$checkout/lvs" ]; then
	echo "SKIP: no LVS testbed checkout at $checkout (set LVS_TESTBED)"; exit $ksft_skip
fi
if ! modprobe -q ip_vs || [ ! -e /proc/net/ip_vs ]; then
	echo "SKIP: the kernel lacks IPVS (modprobe ip_vs)"; exit $ksft_skip
fi

"$checkout/lvs" run --profile "${LVS_PROFILE:-smoke}" --ktap
case $? in
	0) exit 0 ;;
	2) echo "SKIP: the testbed could not run here (its error is above)"; exit $ksft_skip ;;
	*) exit 1 ;;
esac
