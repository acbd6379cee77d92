#!/usr/bin/env bash
# Install the SendPost agent on a Postfix host:
#
#   curl -fsSL https://downloads.sendpost.io/agent/install.sh \
#     | sudo bash -s -- --api-key KEY --mta postfix --endpoint URL
#
# It installs the sendpost-agent .deb or .rpm (whichever this system uses), writes the API key
# and the other settings to /etc/sendpost-agent/config.yaml (mode 0640, group sendpost-agent),
# enables and starts the systemd service, then runs `sendpost-agent check` and reports.
#
# Options:
#   --api-key KEY     API key of the Custom SMTP provider (required)
#   --mta NAME        the MTA whose log is read: postfix (default postfix)
#   --endpoint URL    event ingestion URL (default: SendPost's)
#   --log-path PATH   the mail log (default /var/log/mail.log, or /var/log/maillog where that
#                     is the one that exists)
#   --package FILE    install this .deb/.rpm instead of downloading the latest one
#   --root DIR        install into DIR instead of /: unpack the package there and write the
#                     config, without the package manager, users or systemd (images, tests)
#   --dry-run         print what would be done and change nothing
#   --no-start        do not enable or start the service
#   -h, --help        this text
#
# Environment: SENDPOST_AGENT_PACKAGE_BASE, where the packages are downloaded from.
#
# Exit status: 0 installed and the check passed; 1 installed but the check found a problem, or
# the installation failed; 2 bad arguments.
#
# Everything runs from main(), called on the last line: bash has read the whole script before
# any command runs, so nothing (apt, dnf) can swallow the rest of a script piped to `bash -s`.
set -euo pipefail

PROG=install.sh
DEFAULT_ENDPOINT=https://events.sendpost.io/api/v1/tpsp/custom-smtp/events
PACKAGE_BASE=${SENDPOST_AGENT_PACKAGE_BASE:-https://downloads.sendpost.io/agent/latest}
SERVICE=sendpost-agent
AGENT_USER=sendpost-agent

api_key="" mta="postfix" endpoint="$DEFAULT_ENDPOINT" log_path="" package=""
root="" dry_run=0 start=1

say() { printf '%s\n' "$*"; }
usage_error() {
    printf '%s: %s (see --help)\n' "$PROG" "$*" >&2
    exit 2
}
fail() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    exit 1
}

# Run a command that changes the system, or only show it under --dry-run.
run() {
    if ((dry_run)); then
        say "would run: $*"
    else
        "$@"
    fi
}

parse_args() {
    while (($#)); do
        local flag=$1
        case $flag in
            -h | --help)
                sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" 2>/dev/null \
                    || say "usage: bash install.sh --api-key KEY [--mta postfix] [--endpoint URL]"
                exit 0
                ;;
            --dry-run) dry_run=1 ;;
            --no-start) start=0 ;;
            --api-key | --mta | --endpoint | --log-path | --package | --root)
                (($# >= 2)) || usage_error "$flag needs a value"
                case $2 in --*) usage_error "$flag needs a value (got the option $2)" ;; esac
                case $flag in
                    --api-key) api_key=$2 ;;
                    --mta) mta=$2 ;;
                    --endpoint) endpoint=$2 ;;
                    --log-path) log_path=$2 ;;
                    --package) package=$2 ;;
                    --root) root=$2 ;;
                esac
                shift
                ;;
            --api-key=* | --mta=* | --endpoint=* | --log-path=* | --package=* | --root=*)
                local name=${flag%%=*}
                set -- "$name" "${flag#*=}" "${@:2}"
                continue
                ;;
            *) usage_error "unknown option $flag" ;;
        esac
        shift
    done
}

validate() {
    [[ -n $api_key ]] || usage_error "--api-key is required"
    [[ $api_key =~ ^[[:graph:]]+$ ]] \
        || usage_error "--api-key must be one word, without spaces or control characters"
    mta=${mta,,}
    [[ $mta == postfix ]] || usage_error "--mta: unsupported MTA '$mta' (supported: postfix)"
    [[ $endpoint =~ ^https?://[^/[:space:]]+([/?#][^[:space:]]*)?$ ]] \
        || usage_error "--endpoint must be an http:// or https:// URL with a host, got '$endpoint'"
    if [[ -n $log_path && $log_path != /* ]]; then
        usage_error "--log-path must be an absolute path, got '$log_path'"
    fi
    if [[ -n $package && ! -f $package ]]; then
        usage_error "--package: no such file '$package'"
    fi
    if [[ -n $root ]]; then
        [[ -d $root ]] || usage_error "--root: no such directory '$root'"
        root=$(cd "$root" && pwd)
    fi
    if [[ -z $root ]] && ((!dry_run)) && [[ $(id -u) -ne 0 ]]; then
        fail "run me as root (sudo bash -s -- ...), or with --root DIR or --dry-run"
    fi
}

# deb or rpm: from the --package file's name, else from the system's package manager.
package_kind() {
    case $package in
        *.deb) echo deb; return ;;
        *.rpm) echo rpm; return ;;
        ?*) usage_error "--package must be a .deb or an .rpm file, got '$package'" ;;
    esac
    if command -v dpkg >/dev/null && command -v apt-get >/dev/null; then
        echo deb
    elif command -v rpm >/dev/null; then
        echo rpm
    else
        fail "this system has neither dpkg/apt nor rpm; use the single executable instead"
    fi
}

default_log_path() {
    if [[ ! -e $root/var/log/mail.log && -e $root/var/log/maillog ]]; then
        echo /var/log/maillog
    else
        echo /var/log/mail.log
    fi
}

fetch_package() {
    local kind=$1 dest=$2 url
    if [[ $kind == deb ]]; then
        url="$PACKAGE_BASE/sendpost-agent_latest_$(dpkg --print-architecture).deb"
    else
        url="$PACKAGE_BASE/sendpost-agent-latest.$(uname -m).rpm"
    fi
    say "downloading $url"
    if command -v curl >/dev/null; then
        curl -fsSL --retry 3 -o "$dest" "$url" || fail "could not download $url"
    elif command -v wget >/dev/null; then
        wget -q -O "$dest" "$url" || fail "could not download $url"
    else
        fail "neither curl nor wget is installed; download $url and pass it with --package"
    fi
}

install_package() {
    local kind=$1 file=$2
    if [[ -n $root ]]; then
        say "unpacking $file into $root"
        # Like the package manager with a changed conffile: an existing config stays as it is.
        local conf="$root/etc/sendpost-agent/config.yaml" kept=""
        if [[ -f $conf ]] && ((!dry_run)); then
            kept=$(mktemp "$root/.sendpost-agent-config.XXXXXX")
            cp -p "$conf" "$kept"
        fi
        if [[ $kind == deb ]]; then
            run dpkg-deb -x "$file" "$root"
        elif ((dry_run)); then
            say "would run: rpm2cpio $file | cpio -idm (in $root)"
        else
            (rpm2cpio "$file" | (cd "$root" && cpio -idmu --quiet)) || fail "could not unpack $file"
        fi
        if [[ -n $kept ]]; then
            mv -f "$kept" "$conf"
        fi
        return
    fi
    say "installing $file"
    if [[ $kind == deb ]]; then
        # --force-confold keeps a config.yaml changed by an earlier run (it holds the key).
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            -o Dpkg::Options::=--force-confold "$file" </dev/null
    elif command -v dnf >/dev/null; then
        run dnf install -y -q "$file" </dev/null
    elif command -v yum >/dev/null; then
        run yum install -y -q "$file" </dev/null
    elif command -v zypper >/dev/null; then
        run zypper --non-interactive install --allow-unsigned-rpm "$file" </dev/null
    else
        run rpm -U --replacepkgs "$file" </dev/null
    fi
}

# YAML single-quoted scalar.
yaml_quote() { printf "'%s'" "${1//\'/\'\'}"; }

# Set api-key, mta, endpoint and log-path in the config: each replaces the line (commented out or
# not) that holds the key, keys not found are appended, and every other line of an existing file
# (local settings, comments) is kept. Written to a temporary file and renamed into place.
write_config() {
    local conf=$1 dir tmp
    dir=$(dirname "$conf")
    if ((dry_run)); then
        say "would write $conf (mode 0640, group $AGENT_USER): api-key: ${api_key:0:4}…," \
            "mta: $mta, endpoint: $endpoint, log-path: $log_path"
        return
    fi
    mkdir -p "$dir"
    tmp=$(umask 077 && mktemp "$dir/.config.yaml.XXXXXX")
    SP_API_KEY=$(yaml_quote "$api_key") SP_MTA=$mta SP_ENDPOINT=$(yaml_quote "$endpoint") \
        SP_LOG_PATH=$(yaml_quote "$log_path") awk '
        BEGIN {
            n = split("api-key mta endpoint log-path", order, " ")
            value["api-key"] = ENVIRON["SP_API_KEY"]; value["mta"] = ENVIRON["SP_MTA"]
            value["endpoint"] = ENVIRON["SP_ENDPOINT"]; value["log-path"] = ENVIRON["SP_LOG_PATH"]
        }
        {
            line = $0
            sub(/^[ \t]*#?[ \t]*/, "", line)
            key = substr(line, 1, index(line, ":") - 1)
            if (key in value) {
                if (!(key in done)) print key ": " value[key]
                done[key] = 1
                next
            }
            print
        }
        END { for (i = 1; i <= n; i++) if (!(order[i] in done)) print order[i] ": " value[order[i]] }
    ' "$([[ -f $conf ]] && echo "$conf" || echo /dev/null)" >"$tmp"
    chmod 0640 "$tmp"
    if [[ -z $root ]] && getent group "$AGENT_USER" >/dev/null; then
        chown "root:$AGENT_USER" "$tmp"
    fi
    mv -f "$tmp" "$conf"
    say "wrote $conf (mode 0640)"
}

start_service() {
    if ((!start)) || [[ -n $root ]]; then
        say "not starting the service; start it with: systemctl enable --now $SERVICE"
        return 0
    fi
    if [[ -d /run/systemd/system ]]; then
        run systemctl daemon-reload
        run systemctl enable --quiet "$SERVICE"
        run systemctl restart "$SERVICE"
        say "the $SERVICE service is enabled and started (logs: journalctl -u $SERVICE)"
    else
        say "systemd is not running here, so no service was started; run the agent with:"
        say "  runuser -u $AGENT_USER -- /usr/bin/sendpost-agent run --config /etc/sendpost-agent/config.yaml"
    fi
}

# `sendpost-agent check`, as the service user when there is one (it reads the log with the
# service's permissions). Returns its exit status.
run_check() {
    local bin=$1 conf=$2 as_agent=()
    [[ -x $bin ]] || fail "$bin is missing after the installation"
    if [[ -z $root ]] && id "$AGENT_USER" >/dev/null 2>&1 && command -v runuser >/dev/null; then
        as_agent=(runuser -u "$AGENT_USER" --)
    fi
    say "checking: sendpost-agent check --config $conf"
    "${as_agent[@]}" "$bin" check --config "$conf" </dev/null
}

main() {
    parse_args "$@"
    validate
    local kind conf bin work
    kind=$(package_kind)
    [[ -n $log_path ]] || log_path=$(default_log_path)
    conf="$root/etc/sendpost-agent/config.yaml"
    bin="$root/usr/bin/sendpost-agent"

    if [[ -z $package ]]; then
        work=$(mktemp -d)
        trap "rm -rf '$work'" EXIT
        package="$work/sendpost-agent.$kind"
        if ((dry_run)); then
            say "would download the latest $kind package from $PACKAGE_BASE"
        else
            fetch_package "$kind" "$package"
        fi
    fi
    install_package "$kind" "$package"
    write_config "$conf"
    start_service
    if ((dry_run)); then
        say "dry run: nothing was changed"
    elif run_check "$bin" "$conf"; then
        say "done: sendpost-agent is installed and the check passed"
    else
        say "sendpost-agent is installed, but the check above found a problem:"
        say "fix it in $conf, then run: systemctl restart $SERVICE"
        exit 1
    fi
}

main "$@"
