# Sourced by scripts/demo and scripts/test: the repo's .venv, made and installed only when needed.
#
#   ensure_venv REPO EXTRAS      e.g. ensure_venv "$repo" "[dev]"   (EXTRAS may be empty)
#
# Installs `pip install -e "REPO$EXTRAS"` into REPO/.venv when the venv is new or
# pyproject.toml has changed since the last install with these extras (a stamp in
# .venv says which); otherwise does nothing, quietly. A fresh clone (no .venv, as in
# CI) always gets a full install.

find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        # A pyenv shim exists for versions it does not have and complains on stderr.
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
        then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: assembler needs Python 3.11 or newer on PATH" >&2
    return 1
}

ensure_venv() {
    local repo="$1" extras="$2" venv="$1/.venv" python stamp wanted
    if [ ! -x "$venv/bin/python" ]; then
        python="$(find_python)"
        echo "creating $venv" >&2
        "$python" -m venv "$venv"
    fi
    stamp="$venv/.assembler-installed${extras//[^a-z]/-}"
    wanted="$("$venv/bin/python" -c 'import hashlib, sys
print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())' <"$repo/pyproject.toml")"
    # An install with extras serves a caller that needs none (the demo after the tests).
    if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ] &&
        { [ -n "$extras" ] || ! grep -qsx "$wanted" "$venv"/.assembler-installed*; }; then
        echo "installing assembler${extras} into $venv" >&2
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -e "$repo$extras"
        echo "$wanted" >"$stamp"
    fi
}
