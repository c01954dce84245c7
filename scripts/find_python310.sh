#!/usr/bin/env bash
# Print the path of a working Python 3.10 interpreter: PATH first, then pyenv; nothing if none.
# (A pyenv shim named python3.10 can sit on PATH and fail, so each candidate is actually run.)
works() { "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }
for c in python3.10 "$(command -v python3 2>/dev/null)"; do
  p=$(command -v "$c" 2>/dev/null) && works "$p" && { echo "$p"; exit 0; }
done
if command -v pyenv >/dev/null 2>&1; then
  for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.10(\.[0-9]+)?$' | sort -t. -k3 -n -r); do
    p="$(pyenv root)/versions/$v/bin/python3.10"
    works "$p" && { echo "$p"; exit 0; }
  done
fi
exit 1
