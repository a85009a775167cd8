# Shared set-up of scripts/demo.sh and scripts/test.sh; sourced, not run.
#
# - CARGO_TARGET_DIR defaults to a cache folder outside the clone, so a fresh clone (and CI)
#   reuses earlier builds of the heavy dependencies (DataFusion, SQLite, later the AWS SDK,
#   azure_core and librdkafka).
# - System packages the native parts of the stack build with are installed when missing
#   (Debian/Ubuntu, as root or with sudo): cmake, a C/C++ toolchain, pkg-config, OpenSSL,
#   zlib and libcurl headers (librdkafka is built from source with cmake by the rdkafka
#   crate; Debian's own librdkafka is too old for it).

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"

CAIRN_APT_PACKAGES=(cmake build-essential pkg-config libssl-dev zlib1g-dev libcurl4-openssl-dev)

# Samba's AD domain controller, the real Active Directory of the LDAP source's tests.
# samba-dsdb-modules (the directory database's ldb modules) and samba-vfs-modules (the sysvol
# ACLs provisioning sets) are only recommendations of samba,
# and installs skip recommendations.
# samba: the AD peer; openssl: certificates for the syslog-over-TLS test; rsyslog: a real
# syslog receiver.
CAIRN_TEST_APT_PACKAGES=(samba samba-ad-provision samba-dsdb-modules samba-vfs-modules openssl rsyslog)

ensure_build_packages() {
    install_apt_packages "${CAIRN_APT_PACKAGES[@]}"
}

ensure_test_packages() {
    install_apt_packages "${CAIRN_TEST_APT_PACKAGES[@]}"
    export CAIRN_SAMBA_TOOL="${CAIRN_SAMBA_TOOL:-$(command -v samba-tool || echo /usr/bin/samba-tool)}"
}

install_apt_packages() {
    command -v dpkg >/dev/null 2>&1 || return 0
    local missing=()
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
            echo "warning: missing packages (${missing[*]}) and no root or sudo to install them;" \
                 "run: apt-get install ${missing[*]}" >&2
            return 0
        fi
    fi
    echo "Installing packages: ${missing[*]}" >&2
    $sudo apt-get update -qq >/dev/null && \
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# moto's Security Hub server, the real peer of the Security Hub source's tests, in a local
# virtual environment (pinned; PyPI `moto[server]`).
CAIRN_MOTO_VERSION=5.2.5
ensure_moto() {
    local venv="${CAIRN_VENV:-$HOME/.cache/cairn/venv}"
    if ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$CAIRN_MOTO_VERSION')" >/dev/null 2>&1; then
        echo "Installing moto[server]==$CAIRN_MOTO_VERSION into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$CAIRN_MOTO_VERSION"
    fi
    export CAIRN_MOTO_SERVER="$venv/bin/moto_server"
}

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found; install Rust 1.95 or newer from https://rustup.rs" >&2
        exit 1
    fi
}
