#!/usr/bin/env bash
# Install the Debian packages saferisk needs (WeasyPrint's Pango/HarfBuzz, fonts, poppler for
# the tests). As root: apt-get installs what is missing. Otherwise: name what is missing.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "Installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "Missing system packages (install them as root): sudo apt-get install ${missing[*]}" >&2
  echo "Continuing; PDF rendering or PDF tests may fail without them." >&2
fi
