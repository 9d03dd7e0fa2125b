# Sourced by the lab's scripts. wait_for SECONDS COMMAND...: runs COMMAND until it succeeds,
# at most SECONDS; fails naming what it waited for.
wait_for() {
  local limit=$1; shift
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || { echo "${0##*/}: timed out waiting for: $*" >&2; return 1; }
    sleep 0.1
  done
}
