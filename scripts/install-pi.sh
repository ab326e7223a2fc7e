#!/usr/bin/env bash
# Install wearable-gateway as a systemd service on a Raspberry Pi (or any Debian-like machine).
# Idempotent: run it again to upgrade; it never overwrites a configuration or credentials file.
#
#   sudo scripts/install-pi.sh            # the service, with examples/gateway.toml as the config to edit
#   sudo scripts/install-pi.sh --demo     # plus the simulator and emulator units and a demo config:
#                                         # starting the units then runs the whole chain on the Pi
#   sudo scripts/install-pi.sh --start    # also (re)start the units now
#
# Options for image builders and tests: --root DIR stages an installation in DIR that works once
# DIR is copied to / (the virtual environment's scripts name /opt/wearable-gateway/venv, not DIR;
# the same Python must be at the same path in the image); it creates no user and runs no
# systemctl: sysusers.d creates the user and its groups at the image's first boot.
# --python PY picks the interpreter (3.11 or newer).
#
# What it does:
#   /opt/wearable-gateway/venv         a virtual environment with the project installed
#   user wearable-gateway              a system user in the dialout (serial) and bluetooth groups,
#                                      created with any missing group (/usr/lib/sysusers.d/wearable-gateway.conf)
#   /etc/wearable-gateway/gateway.toml the configuration (kept if it exists)
#   /etc/wearable-gateway/env          credentials as environment variables, mode 0640 (kept if it exists)
#   /var/lib/wearable-gateway          the spool, owned by the service user, mode 0750
#   /etc/systemd/system/*.service      wearable-gateway.service (Type=notify, watchdog, sandboxing)
set -euo pipefail

src="$(cd "$(dirname "$0")/.." && pwd)"
root=""
demo=0
start=0
python="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
    case "$1" in
        --demo) demo=1 ;;
        --start) start=1 ;;
        --root) root="${2%/}"; shift ;;
        --python) python="$2"; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "install-pi.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { echo "install-pi.sh: $*"; }
user=wearable-gateway
opt="$root/opt/wearable-gateway"
etc="$root/etc/wearable-gateway"
var="$root/var/lib/wearable-gateway"
units="$root/etc/systemd/system"

if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
    echo "install-pi.sh: run as root (sudo), or give --root DIR to stage an installation" >&2
    exit 2
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "install-pi.sh: $python is older than Python 3.11" >&2; exit 2; }

# 1. The service user and the groups the unit names (SupplementaryGroups=dialout bluetooth): a
#    group missing on this machine (no BlueZ installed yet) is created, or systemd would refuse to
#    start the unit. Declared for systemd-sysusers too, so a staged image gets them at first boot.
sysusers="$root/usr/lib/sysusers.d"
mkdir -p "$sysusers"
install -m 0644 "$src/packaging/systemd/wearable-gateway.sysusers" "$sysusers/wearable-gateway.conf"
if [ -z "$root" ]; then
    if command -v systemd-sysusers >/dev/null 2>&1 && systemd-sysusers "$sysusers/wearable-gateway.conf"; then
        :
    else  # no systemd-sysusers: the same by hand
        for group in dialout bluetooth; do
            getent group "$group" >/dev/null || { groupadd --system "$group"; say "created group $group"; }
        done
        if ! id "$user" >/dev/null 2>&1; then
            useradd --system --home-dir /var/lib/wearable-gateway --no-create-home --shell /usr/sbin/nologin "$user"
        fi
        usermod -a -G dialout,bluetooth "$user"
    fi
    id "$user" >/dev/null 2>&1 && say "user $user: $(id -nG "$user")"
fi

# 2. The virtual environment and the project (an upgrade when run again).
mkdir -p "$opt"
[ -x "$opt/venv/bin/python" ] || "$python" -m venv "$opt/venv"
"$opt/venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$src"
cp "$src/README.md" "$opt/README.md"
say "installed $("$opt/venv/bin/python" -m gateway --version) into $opt/venv"
if [ -n "$root" ]; then
    # A venv names its own path in its scripts (#!DIR/opt/...): point them where the copy will be.
    grep -rlI --null -F "$opt/venv" "$opt/venv/bin" | xargs -0 -r sed -i "s|$opt/venv|/opt/wearable-gateway/venv|g"
    say "scripts in $opt/venv/bin point to /opt/wearable-gateway/venv (copy $root to / to use them)"
fi

# 3. Configuration and credentials: written once, never overwritten.
mkdir -p "$etc"
if [ ! -e "$etc/gateway.toml" ]; then
    if [ "$demo" = 1 ]; then
        cp "$src/packaging/demo/gateway.toml" "$etc/gateway.toml"
    else
        cp "$src/examples/gateway.toml" "$etc/gateway.toml"
    fi
    say "wrote $etc/gateway.toml"
else
    say "kept the existing $etc/gateway.toml"
fi
if [ ! -e "$etc/env" ]; then
    printf '%s\n' "# Credentials for /etc/wearable-gateway/gateway.toml (api_key_env = \"KARDIA_API_KEY\" ...)." \
        "#KARDIA_API_KEY=" "#HUB_TOKEN=" "#HEXOSKIN_PASSWORD=" "#HEXOSKIN_API_SECRET=" "#UP_TOKEN=" "#GATEWAY_STATUS_PASSWORD=" > "$etc/env"
    chmod 0640 "$etc/env"
    say "wrote $etc/env (mode 0640)"
fi

# 4. The spool directory.
mkdir -p "$var"
chmod 0750 "$var"
if [ -z "$root" ]; then
    chown "$user:$user" "$var"
    chgrp "$user" "$etc/env"
fi

# 5. The units.
mkdir -p "$units"
install -m 0644 "$src/packaging/systemd/wearable-gateway.service" "$units/"
enable=(wearable-gateway.service)
if [ "$demo" = 1 ]; then
    install -m 0644 "$src/packaging/systemd/wearable-sim-cloud.service" "$units/"
    install -m 0644 "$src/packaging/systemd/wearable-sim-kardia.service" "$units/"
    enable=(wearable-sim-cloud.service wearable-sim-kardia.service "${enable[@]}")
fi
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable "${enable[@]}" >/dev/null
    say "enabled ${enable[*]}"
    if [ "$start" = 1 ]; then
        systemctl restart "${enable[@]}"
        say "started; try: wearable-gateway status   (or open http://127.0.0.1:8765/)"
    else
        say "start with: sudo systemctl start ${enable[*]}"
    fi
else
    say "systemd is not running here (or --root): units copied to $units, not enabled"
fi
say "done. Edit $etc/gateway.toml, then: $opt/venv/bin/wearable-gateway doctor --config $etc/gateway.toml"
