#!/bin/sh
# Installs the Debian packages gleam needs that are missing (through sudo
# when not root). Prints nothing when all are there.
set -eu
PKGS="build-essential cmake pkg-config luajit libluajit-5.1-dev libuv1-dev libmsgpack-dev liblmdb-dev lua-busted zlib1g-dev sqlite3 luarocks zip unzip valgrind mawk gzip libedit-dev tmux libssl-dev"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
