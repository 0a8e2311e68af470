#!/usr/bin/env bash
# A foreign-function worker in plain shell that serves "shell.fail": it heartbeats
# the attempt, then reports a non-retryable failure (the program sees CallError).
# Call keys are sent URL-encoded (PROGRAM%3ASEQ) to show the server accepts both forms.
#
#   fail_worker.sh BASE_URL [MAX]    env: FLOWMETAL_API_TOKEN (optional), PYTHON (default python3)
set -euo pipefail

url=${1:?usage: fail_worker.sh BASE_URL [MAX]}
max=${2:-1}
py=${PYTHON:-python3}
worker="shell-fail-$$"
auth=()
if [ -n "${FLOWMETAL_API_TOKEN:-}" ]; then
    auth=(-H "Authorization: Bearer $FLOWMETAL_API_TOKEN")
fi

post() {
    curl -sS --fail-with-body -X POST "${auth[@]}" -H 'Content-Type: application/json' -d "$2" "$url$1"
}

served=0
while [ "$served" -lt "$max" ]; do
    claimed=$(post /functions/claim "{\"names\": [\"shell.fail\"], \"worker\": \"$worker\", \"wait\": 5}")
    lines=$("$py" -c 'import json, sys, urllib.parse
for c in json.load(sys.stdin)["calls"]:
    print(urllib.parse.quote(c["key"], safe=""), c["attempt"], c["payload"]["args"][0])' <<<"$claimed")
    [ -n "$lines" ] || continue
    while read -r key attempt what; do
        post "/functions/calls/$key/heartbeat" "{\"worker\": \"$worker\", \"attempt\": $attempt, \"lease\": 30}" >/dev/null
        status=$(post "/functions/calls/$key/fail" "{\"worker\": \"$worker\", \"attempt\": $attempt,
            \"error\": {\"type\": \"OutOfStock\", \"message\": \"no $what left\"}, \"retryable\": false}")
        echo "$key $status"
        served=$((served + 1))
    done <<<"$lines"
done
