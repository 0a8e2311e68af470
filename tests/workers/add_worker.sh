#!/usr/bin/env bash
# A foreign-function worker for `flowmetal serve` in plain shell: curl speaks HTTP,
# a one-line python reads the JSON. It serves "shell.add" (the sum of its two
# arguments) through the claim/complete protocol, then exits after MAX calls.
#
#   add_worker.sh BASE_URL [MAX]     env: FLOWMETAL_API_TOKEN (optional), PYTHON (default python3)
set -euo pipefail

url=${1:?usage: add_worker.sh BASE_URL [MAX]}
max=${2:-1}
py=${PYTHON:-python3}
worker="shell-add-$$"
auth=()
if [ -n "${FLOWMETAL_API_TOKEN:-}" ]; then
    auth=(-H "Authorization: Bearer $FLOWMETAL_API_TOKEN")
fi

post() {  # post PATH JSON -> the response body (fails on an HTTP error)
    curl -sS --fail-with-body -X POST "${auth[@]}" -H 'Content-Type: application/json' -d "$2" "$url$1"
}

served=0
while [ "$served" -lt "$max" ]; do
    # long-poll: the server answers as soon as a call is due, or with no calls after 5 s
    claimed=$(post /functions/claim "{\"names\": [\"shell.add\"], \"worker\": \"$worker\", \"wait\": 5, \"lease\": 30}")
    # one line per claimed call: KEY ATTEMPT A B
    lines=$("$py" -c 'import json, sys
for c in json.load(sys.stdin)["calls"]:
    print(c["key"], c["attempt"], *c["payload"]["args"])' <<<"$claimed")
    [ -n "$lines" ] || continue
    while read -r key attempt a b; do
        status=$(post "/functions/calls/$key/complete" \
            "{\"worker\": \"$worker\", \"attempt\": $attempt, \"result\": $((a + b))}")
        echo "$key $status"
        served=$((served + 1))
    done <<<"$lines"
done
