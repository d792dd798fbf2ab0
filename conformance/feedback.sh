#!/bin/bash
# keepalived MISC_CHECK with misc_dynamic: exit status - 2 becomes the real
# server's weight (keepalived.conf(5)); 1 means failed. The real server's load
# agent (loadgen.stream, port 9100) answers with its open connection count.
#   weight = max(1, 100 - 10 x load)
exec 3<>"/dev/tcp/$1/9100" || exit 1
read -r -t 2 load <&3 || exit 1
weight=$((100 - 10 * load))
((weight < 1)) && weight=1
exit $((weight + 2))
