#!/usr/bin/env bash
# The live PyXspec tests (tests/test_pyxspec_live*.py), in their own pytest
# process: XSPEC 12.9.1 / PyXspec 2.0.0 from ../shared/pyxspec, unpacked once
# into .pyxspec/ (ignored by git), HOME a temporary folder (XSPEC writes
# $HOME/.xspec; under pytest-xdist, `make test`'s -n 2, each worker makes its own,
# tests/conftest.py), stdin from /dev/null (XSPEC prompts when a response is
# missing from a header). env.sh is sourced for this process only: importing
# xspec with HEADAS unset kills the process, and the engine tests of the main
# run use the xspectrampoline wheel's library, not 12.9.1's.
# With the tarball present, a skipped live test fails the run
# (REQUIRE_PYXSPEC=1, tests/conftest.py); without it they skip with the reason.
#
# usage: tests/run_pyxspec_live.sh PYTHON [pytest arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:?usage: tests/run_pyxspec_live.sh PYTHON [pytest args]}
shift
tarball=${PYXSPEC_TARBALL:-../shared/pyxspec/heasoft-6.20-xspec-12.9.1-pyxspec-2.0.0.tar.xz}
tree=.pyxspec
live_tests=(tests/test_pyxspec_live*.py)

if [ ! -f "$tarball" ]; then
  echo "live PyXspec tests: $tarball is absent; they skip"
  exec env -u HEADAS "$python" -m pytest -ra -q "${live_tests[@]}" "$@" </dev/null
fi

stamp="$tree/.unpacked-from"
if [ ! -f "$tree/heasoft/env.sh" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$(basename "$tarball")" ] \
   || [ "$tarball" -nt "$stamp" ]; then
  echo "unpacking $tarball into $tree/"
  rm -rf "$tree.partial" "$tree"
  mkdir -p "$tree.partial"
  tar xJf "$tarball" -C "$tree.partial"
  basename "$tarball" > "$tree.partial/.unpacked-from"
  mv "$tree.partial" "$tree"
fi

home=$(mktemp -d "${TMPDIR:-/tmp}/xspec_sbi_home.XXXXXX")
trap 'rm -rf "$home"' EXIT
(
  export HOME="$home"
  # env.sh reads unset variables; source it without -u.
  set +u
  # shellcheck disable=SC1091
  source "$tree/heasoft/env.sh"
  set -u
  export REQUIRE_PYXSPEC=1
  export XSPEC_SBI_LIBRARY=headas   # the engine uses 12.9.1's library here, as PyXspec does
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  "$python" -m pytest -ra -q -p no:cacheprovider "${live_tests[@]}" "$@" </dev/null
)
