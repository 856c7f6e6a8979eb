# Shared helpers for scripts/interop: checks that count passes and failures,
# background servers that are stopped on exit, and a temporary directory.
# shellcheck shell=bash
passed=0
failed=0
pids=()
cleanups=()
tmp=$(mktemp -d)

finish() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for c in "${cleanups[@]}"; do eval "$c" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap finish EXIT

ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }

# check NAME COMMAND...: passes when the command exits 0; shows its output when it fails.
check() {
  local name=$1; shift
  if out=$("$@" 2>&1); then
    ok "$name"
  else
    bad "$name"; echo "$out" | sed 's/^/     /' | head -20
  fi
}

# expect_exit CODE NAME COMMAND...: passes when the command exits with CODE.
expect_exit() {
  local code=$1 name=$2; shift 2
  "$@" >"$tmp/out" 2>&1; local rc=$?
  if [ "$rc" -eq "$code" ]; then
    ok "$name (exit $rc)"
  else
    bad "$name: exit $rc, expected $code"; sed 's/^/     /' "$tmp/out" | head -20
  fi
}

# start_tockd LOGNAME [PREFIX...] -- ARGS...: runs tockd (optionally under a prefix such as
# `ip netns exec NS`) in the background and waits until it listens.
start_tockd() {
  local log=$tmp/$1.log; shift
  local prefix=()
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do prefix+=("$1"); shift; done
  shift
  "${prefix[@]}" "$bin/tockd" "$@" >"$log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 50); do
    # Listening, and still running: a tockd that found one of its ports taken exits 1
    # after logging the others.
    if grep -q "listening" "$log" 2>/dev/null; then
      sleep 0.1
      kill -0 "$pid" 2>/dev/null && return 0
      break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "tockd did not start:"; cat "$log"; exit 1
}

summary() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
