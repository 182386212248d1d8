#!/usr/bin/env bash
# The demo, one command: breakglass on the embedded store with the demo policy, plus a
# throw-away OpenSSH server on loopback that trusts breakglass's SSH CA (the policy's
# `bastion`), and the steps to break glass printed so that they work as printed. Ctrl-C stops
# the server and the SSH host and removes the SSH host's files.
# Usage: scripts/demo.sh [DATA_DIR]   (default: ./demo-data)
#   BREAKGLASS_LISTEN (127.0.0.1:8700), BREAKGLASS_DEMO_SSH_PORT (8722): where they listen;
#   BREAKGLASS_BIN: a breakglass binary to run instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
data="${1:-./demo-data}"
listen="${BREAKGLASS_LISTEN:-127.0.0.1:8700}"
ssh_port="${BREAKGLASS_DEMO_SSH_PORT:-8722}"
url="http://$listen"
if [ -n "${BREAKGLASS_BIN:-}" ]; then
  bin=$BREAKGLASS_BIN
else
  cargo build --release --quiet --bin breakglass
  bin=./target/release/breakglass
fi
abs_bin=$(realpath "$bin")
"$bin" init --data-dir "$data"

# The SSH host's files (and the policy served, pointing at it): beside the data directory,
# removed when the demo stops.
run="${data%/}-run"
rm -rf "$run"
mkdir -m 0700 "$run"
abs_run=$(realpath "$run")
server="" sshd_pid="" refresher=""
cleanup() {
  trap - EXIT INT TERM
  [ -z "$refresher" ] || kill "$refresher" 2>/dev/null || true
  [ -z "$sshd_pid" ] || kill "$sshd_pid" 2>/dev/null || true
  if [ -n "$server" ]; then
    kill -TERM "$server" 2>/dev/null || true # writes a final audit checkpoint
    wait "$server" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  rm -rf "$abs_run"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# sshd lets only its own user log in unless it runs as root: then the principal is you.
principal=root
[ "$(id -u)" -eq 0 ] || principal=$(id -un)
sed -e "s|^    principals: \[root\]$|    principals: [$principal]|" \
    -e "s|^    port: 8722$|    port: $ssh_port\n    session_command: $abs_bin\n    host_krl: $abs_run/revoked.krl|" \
    examples/demo-policy.yaml > "$run/policy.yaml"
grep -q "^    host_krl: " "$run/policy.yaml" || { echo "demo.sh: examples/demo-policy.yaml has no bastion on port 8722" >&2; exit 1; }

"$bin" serve --data-dir "$data" --policy "$run/policy.yaml" --listen "$listen" &
server=$!
for _ in $(seq 300); do
  "$bin" --server "$url" ssh ca-key > "$run/ca.pub" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || exit 1 # the server said why
  sleep 0.1
done
[ -s "$run/ca.pub" ] || { echo "demo.sh: the server did not answer on $url" >&2; exit 1; }

# The SSH host, from the same sshd config as the tests (crates/testkit/sshd_config.in).
have_sshd=""
if [ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null; then
  have_sshd=1
  [ "$(id -u)" -ne 0 ] || mkdir -p /run/sshd # privilege separation directory
  ssh-keygen -q -t ed25519 -N '' -C breakglass-demo-host -f "$run/host_ed25519"
  "$bin" --server "$url" ssh krl --out "$run/revoked.krl" >/dev/null
  sed -e "s|@PORT@|$ssh_port|g" -e "s|@HOST_KEY@|$abs_run/host_ed25519|g" \
      -e "s|@DIR@|$abs_run|g" -e "s|@KRL@|$abs_run/revoked.krl|g" \
      crates/testkit/sshd_config.in > "$run/sshd_config"
  /usr/sbin/sshd -t -f "$abs_run/sshd_config"
  /usr/sbin/sshd -D -e -f "$abs_run/sshd_config" 2> "$run/sshd.log" &
  sshd_pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$ssh_port") 2>/dev/null && break
    kill -0 "$sshd_pid" 2>/dev/null || { cat "$run/sshd.log" >&2; exit 1; }
    sleep 0.1
  done
  # Its host key, so ssh connects without asking and without touching ~/.ssh/known_hosts.
  echo "[127.0.0.1]:$ssh_port $(cut -d' ' -f1,2 "$run/host_ed25519.pub")" > "$run/known_hosts"
  # What a host's cron job does: refresh the KRL (revoked certificates stop working).
  ( while sleep 2; do "$bin" --server "$url" ssh krl --out "$run/revoked.krl" >/dev/null 2>&1 || true; done ) &
  refresher=$!
fi

q() { printf '%q' "$1"; }
B=$(q "$bin")
D=$(q "$data")
host="" stops="the server"
if [ -n "$have_sshd" ]; then
  host=", and a throw-away SSH host on 127.0.0.1:$ssh_port trusting its CA (the policy's bastion)"
  stops="the server and the SSH host"
fi
cat <<STEPS

breakglass demo: the server on $url (data in $data)$host.
To break glass, paste these into another shell:

  cd $(q "$root")
  B=$B
  echo 'correct horse battery staple' | \$B admin user add alice --group oncall --password-stdin --data-dir $D
  echo 'correct horse battery staple' | \$B login --server $url --user alice --password-stdin
  \$B mfa totp enroll                 # scan the QR code with an authenticator app
  \$B mfa totp confirm CODE           # CODE: the 6 digits it shows (or: oathtool --totp -b SECRET)
  \$B request bastion --reason "orders table locked, checkout down" --ticket INC-4711 --for 30m
STEPS
if [ -n "$have_sshd" ]; then
  echo "  \$B ssh GRANT_ID -o UserKnownHostsFile=$(q "$run/known_hosts")   # GRANT_ID: the grant the request printed"
else
  echo "  # no SSH host to try \$B ssh GRANT_ID on: apt-get install openssh-server, then run the demo again"
fi
cat <<STEPS
  \$B status
  \$B audit verify --data-dir $D

Ctrl-C here stops $stops.
STEPS
wait "$server"
