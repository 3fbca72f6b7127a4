# Shared by the scripts: the pinned Python tools in a virtualenv, and moto on a free loopback
# port (stopped when the calling script exits). Source it from the checkout's root.
#   SHIPLINE_VENV   where the virtualenv lives (default: .venv in the checkout)

step() { printf '\n==> %s\n' "$*"; }

# --- pinned Python tools ---------------------------------------------------------------------
venv=${SHIPLINE_VENV:-$PWD/.venv}
stamp="$venv/.requirements.sha256"
want=$(sha256sum scripts/requirements.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "installing pinned tools into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements.txt
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0

# --- moto on a free loopback port --------------------------------------------------------------
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

start_moto() {
  local port moto_log
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  step "starting moto on 127.0.0.1:$port"
  moto_log=$(mktemp -t shipline-moto.XXXXXX.log)
  moto_server -H 127.0.0.1 -p "$port" >"$moto_log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
      break
    fi
    sleep 0.2
  done
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" \
    || { echo "moto did not start; its log:"; cat "$moto_log"; exit 1; }
  export SHIPLINE_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"
}
