#!/bin/bash
# Where one busy Envoy's CPU per request goes: Envoy's own code, Wasm code V8 compiled (JIT),
# the kernel and other libraries, in µs per request, from `perf record` samples over SECONDS and
# the requests Envoy counted meanwhile (admin /stats). Run it while the bench loads that Envoy
# (bench/jwt-request-cost.md says how). Needs perf and root (or perf_event_paranoid <= 1).
#
#   bench/tools/cpu-split.sh <envoy pid> [seconds, default 10]
#
# The Envoy binary is stripped, so its part is not split further; `hot` is the share of the
# 12 KiB of Envoy code that is hottest in a native jwt_authn ES256 run (BoringSSL's P-256), a
# yardstick for "the same signature work" across configurations.
set -euo pipefail
pid=$1
seconds=${2:-10}
bootstrap=$(tr '\0' '\n' </proc/"$pid"/cmdline | grep -m1 'bootstrap.json')
admin=$(cat "$(dirname "$bootstrap")/admin.txt")
requests() {
  curl -s "http://$admin/stats?filter=http\..*downstream_rq_total" | grep -v admin |
    awk -F': ' '{ total += $2 } END { print total + 0 }'
}
data=$(mktemp /tmp/cpu-split.XXXXXX)
trap 'rm -f "$data"' EXIT
before=$(requests)
perf record -q -F 1999 -p "$pid" -o "$data" -- sleep "$seconds" 2>/dev/null
after=$(requests)
base=$(grep -m1 'envoy/_bin/envoy' /proc/"$pid"/maps | cut -d- -f1)
perf script -i "$data" -F ip,dso 2>/dev/null | python3 -c "
import sys
base, requests, hz = int('$base', 16), $after - $before, 1999
parts = dict(envoy=0, jit=0, kernel=0, other=0, hot=0)
for line in sys.stdin:
    fields = line.split()
    if len(fields) < 2:
        continue
    ip, dso = fields[0], fields[1]
    if 'envoy/_bin/envoy' in dso:
        parts['envoy'] += 1
        if 0x5ce4000 <= (int(ip, 16) - base) < 0x5ce7000:
            parts['hot'] += 1
    elif 'perf-' in dso or 'JIT' in dso:
        parts['jit'] += 1
    elif 'kernel' in dso:
        parts['kernel'] += 1
    else:
        parts['other'] += 1
if requests <= 0:
    sys.exit('no requests counted: is the bench loading this Envoy?')
us = lambda n: n * 1e6 / hz / requests
total = sum(v for k, v in parts.items() if k != 'hot')
print('requests %d; µs per request: total %.1f, envoy %.1f (hot %.1f), wasm jit %.1f, kernel %.1f, other %.1f'
      % (requests, us(total), us(parts['envoy']), us(parts['hot']), us(parts['jit']), us(parts['kernel']), us(parts['other'])))
"
