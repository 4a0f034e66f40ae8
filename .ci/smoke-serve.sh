#!/usr/bin/env bash
# Start `chat-server serve` as the Procfile does, check it answers, then stop it with SIGTERM.
set -euo pipefail
port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
PORT=$port chat-server serve >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    if python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=1)" 2>/dev/null; then
        kill -TERM "$pid"
        wait "$pid"
        echo "ci: chat-server serve answered on port $port and stopped cleanly"
        exit 0
    fi
    sleep 0.1
done
echo "ci: chat-server serve did not answer; its log:" >&2
cat "$log" >&2
kill -9 "$pid" 2>/dev/null || true
exit 1
