#!/usr/bin/env bash
# Install the SendPost agent on a Postfix host:
#
#   curl -fsSLO https://downloads.sendpost.io/agent/latest/install.sh
#   sudo bash install.sh --api-key-file /root/sendpost.key --endpoint URL
#
# It downloads the sendpost-agent .deb or .rpm (whichever this system uses) and SHA256SUMS,
# checks the package's SHA-256 (and the signature of SHA256SUMS when --public-key is given)
# before anything is installed, installs or upgrades it in place, writes the API key and the
# other settings to /etc/sendpost-agent/config.yaml (mode 0640, root:sendpost-agent), enables
# and starts the systemd service, then runs `sendpost-agent check` and reports. Running it
# again with the same settings changes nothing; with a newer package it upgrades.
#
# The API key (required) comes from, in this order:
#   --api-key-file FILE  the first line of FILE; "-" reads standard input
#   SENDPOST_AGENT_API_KEY in the environment (sudo --preserve-env=SENDPOST_AGENT_API_KEY ...)
#   a prompt on the terminal, when there is one (the key is not echoed)
#   --api-key KEY        still works, but shows the key to every user (ps) and in sudo's log
#
# Options:
#   --api-key-file FILE  read the API key from FILE ("-": standard input)
#   --api-key KEY     the API key on the command line (discouraged: visible in ps and logs)
#   --mta NAME        the MTA whose log is read: postfix (default postfix)
#   --endpoint URL    event ingestion URL (default: SendPost's)
#   --log-path PATH   the mail log (default /var/log/mail.log, or /var/log/maillog where that
#                     is the one that exists)
#   --package FILE    install this .deb/.rpm instead of downloading the latest one
#   --checksums FILE  SHA256SUMS to check the package against (default: downloaded with it,
#                     or the SHA256SUMS beside --package FILE)
#   --public-key FILE also check SHA256SUMS.asc (downloaded, or beside the checksums file)
#                     with this OpenPGP public key (needs gpg)
#   --root DIR        install into DIR instead of /: unpack the package there and write the
#                     config, without the package manager, users or systemd (images, tests)
#   --dry-run         print what would be done and change nothing
#   --no-start        do not enable or start the service
#   -h, --help        this text
#
# Environment: SENDPOST_AGENT_PACKAGE_BASE, where the packages are downloaded from;
# SENDPOST_AGENT_API_KEY, the API key.
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
LIBDIR=/usr/lib/sendpost-agent

api_key="" api_key_file="" key_flag=0 mta="postfix" endpoint="$DEFAULT_ENDPOINT" log_path=""
package="" checksums="" public_key="" root="" dry_run=0 start=1

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
                sed -n '2,/^set /{/^#/{s/^# \{0,1\}//;p;}}' "${BASH_SOURCE[0]}" 2>/dev/null \
                    || say "usage: bash install.sh --api-key KEY [--mta postfix] [--endpoint URL]"
                exit 0
                ;;
            --dry-run) dry_run=1 ;;
            --no-start) start=0 ;;
            --api-key | --api-key-file | --mta | --endpoint | --log-path | --package | --root \
                | --checksums | --public-key)
                (($# >= 2)) || usage_error "$flag needs a value"
                case $2 in --*) usage_error "$flag needs a value (got the option $2)" ;; esac
                case $flag in
                    --api-key) api_key=$2 key_flag=1 ;;
                    --api-key-file) api_key_file=$2 ;;
                    --checksums) checksums=$2 ;;
                    --public-key) public_key=$2 ;;
                    --mta) mta=$2 ;;
                    --endpoint) endpoint=$2 ;;
                    --log-path) log_path=$2 ;;
                    --package) package=$2 ;;
                    --root) root=$2 ;;
                esac
                shift
                ;;
            --api-key=* | --api-key-file=* | --mta=* | --endpoint=* | --log-path=* | --package=* \
                | --root=* | --checksums=* | --public-key=*)
                local name=${flag%%=*}
                set -- "$name" "${flag#*=}" "${@:2}"
                continue
                ;;
            *) usage_error "unknown option $flag" ;;
        esac
        shift
    done
}

# The key from --api-key-file, the environment or the terminal (--api-key only with a warning).
read_api_key() {
    if [[ -n $api_key_file ]]; then
        if [[ $api_key_file == - ]]; then
            IFS= read -r api_key || [[ -n $api_key ]] || usage_error "--api-key-file -: nothing on standard input"
        else
            [[ -r $api_key_file ]] || usage_error "--api-key-file: cannot read '$api_key_file'"
            IFS= read -r api_key <"$api_key_file" || [[ -n $api_key ]] \
                || usage_error "--api-key-file: '$api_key_file' is empty"
        fi
        api_key=${api_key%$'\r'}
    elif ((key_flag)); then
        printf '%s: warning: --api-key shows the key to every user (ps) and in sudo'"'"'s log;' \
            "$PROG" >&2
        printf ' use --api-key-file FILE, --api-key-file - or SENDPOST_AGENT_API_KEY\n' >&2
    elif [[ -n ${SENDPOST_AGENT_API_KEY:-} ]]; then
        api_key=$SENDPOST_AGENT_API_KEY
    elif ((!dry_run)) && [[ -t 2 ]] && { : </dev/tty; } 2>/dev/null; then
        printf 'SendPost API key: ' >&2
        IFS= read -r -s api_key </dev/tty || true
        printf '\n' >&2
    fi
}

validate() {
    read_api_key
    [[ -n $api_key ]] \
        || usage_error "the API key is required (--api-key-file FILE, --api-key-file - or SENDPOST_AGENT_API_KEY)"
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
    if [[ -n $checksums && ! -f $checksums ]]; then
        usage_error "--checksums: no such file '$checksums'"
    fi
    if [[ -n $public_key ]]; then
        [[ -f $public_key ]] || usage_error "--public-key: no such file '$public_key'"
        command -v gpg >/dev/null || fail "--public-key needs gpg (apt-get install gpg / dnf install gnupg2)"
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

download() {
    local url=$1 dest=$2
    if command -v curl >/dev/null; then
        curl -fsSL --retry 3 -o "$dest" "$url" || fail "could not download $url"
    elif command -v wget >/dev/null; then
        wget -q -O "$dest" "$url" || fail "could not download $url"
    else
        fail "neither curl nor wget is installed; download $url and pass it with --package"
    fi
}

# SHA256SUMS (and its signature) from the download site, then the package it lists for this
# machine; prints the package's path.
fetch_package() {
    local kind=$1 dir=$2 name pattern
    download "$PACKAGE_BASE/SHA256SUMS" "$dir/SHA256SUMS"
    if [[ -n $public_key ]]; then
        download "$PACKAGE_BASE/SHA256SUMS.asc" "$dir/SHA256SUMS.asc"
    fi
    if [[ $kind == deb ]]; then
        pattern="sendpost-agent_.*_$(dpkg --print-architecture)\.deb"
    else
        pattern="sendpost-agent-.*\.$(uname -m)\.rpm"
    fi
    name=$(awk -v re="^$pattern\$" '$2 ~ re {print $2; exit}' "$dir/SHA256SUMS")
    [[ -n $name ]] || fail "$PACKAGE_BASE/SHA256SUMS lists no $kind package for this machine"
    say "downloading $PACKAGE_BASE/$name" >&2
    download "$PACKAGE_BASE/$name" "$dir/$name"
    echo "$dir/$name"
}

# The package's SHA-256 must be the one SHA256SUMS gives for its name, and SHA256SUMS must be
# signed by --public-key when one is given: nothing is installed otherwise.
verify_package() {
    local file=$1 sums=$2 name expected actual keyring
    name=$(basename "$file")
    if [[ ! -f $sums ]]; then
        say "warning: $file is not verified (no SHA256SUMS beside it; pass --checksums FILE)" >&2
        [[ -z $public_key ]] || fail "--public-key: no SHA256SUMS to check beside $file"
        return 0
    fi
    if [[ -n $public_key ]]; then
        [[ -f $sums.asc ]] || fail "no signature $sums.asc to check with --public-key"
        keyring=$(mktemp -d)
        if ! gpg --batch --quiet --homedir "$keyring" --import "$public_key" 2>/dev/null \
            || ! gpg --batch --quiet --homedir "$keyring" --trust-model always \
                --verify "$sums.asc" "$sums" 2>/dev/null; then
            rm -rf "$keyring"
            fail "the signature of $sums does not verify with $public_key: not installing"
        fi
        rm -rf "$keyring"
        say "the signature of $(basename "$sums") is good ($public_key)"
    fi
    expected=$(awk -v n="$name" '$2 == n || $2 == "*" n {print $1; exit}' "$sums")
    [[ -n $expected ]] || fail "$sums has no checksum for $name: not installing"
    actual=$(sha256sum "$file" | cut -d' ' -f1)
    [[ $actual == "$expected" ]] \
        || fail "SHA-256 mismatch for $name (expected $expected, got $actual): not installing"
    say "SHA-256 of $name is correct"
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
    if [[ -f $conf ]] && cmp -s "$tmp" "$conf"; then
        # The same settings again: the file stays as it is (its mode and owner made right).
        rm -f "$tmp"
        chmod 0640 "$conf"
        [[ -n $root ]] || ! getent group "$AGENT_USER" >/dev/null || chown "root:$AGENT_USER" "$conf"
        say "$conf is unchanged (mode 0640)"
        return
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
        # The package made /var/lib/sendpost-agent (the state directory) for the service user.
        say "systemd is not running here, so no service was started; run the agent with:"
        say "  runuser -u $AGENT_USER -- /usr/bin/sendpost-agent run --config /etc/sendpost-agent/config.yaml"
        say "(keep it running with your init system or supervisor)"
    fi
}

# `sendpost-agent check`, as the service user when there is one (it reads the log with the
# service's permissions). Returns its exit status.
run_check() {
    local bin=$1 conf=$2 as_agent=() command
    [[ -x $bin ]] || fail "$bin is missing after the installation"
    command=("$bin")
    if [[ -n $root ]]; then
        # Unpacked elsewhere than /, the program's loader (it names $LIBDIR/glibc/...) is not
        # where it looks: start it through the unpacked loader.
        command=("$root$LIBDIR/glibc/ld-linux-x86-64.so.2" --library-path "$root$LIBDIR/glibc"
            "$root$LIBDIR/sendpost-agent")
    elif id "$AGENT_USER" >/dev/null 2>&1 && command -v runuser >/dev/null; then
        as_agent=(runuser -u "$AGENT_USER" --)
    fi
    say "checking: sendpost-agent check --config $conf"
    "${as_agent[@]}" "${command[@]}" check --config "$conf" </dev/null
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
        if ((dry_run)); then
            say "would download SHA256SUMS and the latest $kind package from $PACKAGE_BASE"
            package="$work/sendpost-agent.$kind"
        else
            package=$(fetch_package "$kind" "$work")
            checksums=${checksums:-$work/SHA256SUMS}
        fi
    fi
    if ((!dry_run)); then
        verify_package "$package" "${checksums:-$(dirname "$package")/SHA256SUMS}"
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
