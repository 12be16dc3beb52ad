#!/usr/bin/env bash
# shellcheck shell=bash
#
# scripts/lib/browser.sh: make sure the web viewer's browser tests (cli/tests/browser.rs) have
# Debian's chromium and chromedriver, installing them with apt-get where missing.
#
# Usage (from a bash script):
#     source scripts/lib/browser.sh
#     browser_ensure
#
# Exported after browser_ensure: CHROME_BIN and CHROMEDRIVER, the paths the tests use.
# When neither is found nor installable, browser_ensure fails: the browser tests would fail
# anyway (they never skip), and this says why first.

set -euo pipefail

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    echo "browser.sh is a library: source it from a bash script, then call browser_ensure" >&2
    exit 2
fi
if [[ -n ${_BROWSER_SH_LOADED:-} ]]; then
    return 0
fi
_BROWSER_SH_LOADED=1

_browser_log() {
    printf 'browser.sh: %s\n' "$*" >&2
}

_browser_as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        _browser_log "error: need root (or sudo) to run: $*"
        return 1
    fi
}

# Print the first of the given programs found on PATH or in /usr/bin.
_browser_find() {
    local name
    for name in "$@"; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
        if [[ -x /usr/bin/$name ]]; then
            printf '%s\n' "/usr/bin/$name"
            return 0
        fi
    done
    return 1
}

browser_ensure() {
    local chrome driver
    chrome=${CHROME_BIN:-$(_browser_find chromium chromium-browser || true)}
    driver=${CHROMEDRIVER:-$(_browser_find chromedriver || true)}
    if [[ -z $chrome || -z $driver ]]; then
        if ! command -v apt-get >/dev/null 2>&1; then
            _browser_log "error: chromium or chromedriver not found and apt-get unavailable; install them or set CHROME_BIN and CHROMEDRIVER"
            return 1
        fi
        _browser_log "chromium or chromedriver not found; installing chromium and chromium-driver with apt-get (one-time)"
        _browser_as_root apt-get update -qq
        _browser_as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
        chrome=$(_browser_find chromium chromium-browser) || {
            _browser_log "error: chromium still not found after installing it"
            return 1
        }
        driver=$(_browser_find chromedriver) || {
            _browser_log "error: chromedriver still not found after installing chromium-driver"
            return 1
        }
    fi
    export CHROME_BIN=$chrome CHROMEDRIVER=$driver
    _browser_log "browser tests use $("$chrome" --version 2>/dev/null || echo "$chrome") and $driver"
}
