#!/bin/sh
# pack.sh: makes gleam's .src.rock from this checkout, offline.
#
#   rocks/pack.sh [ROCKSPEC [OUTDIR]]
#
# ROCKSPEC defaults to rocks/gleam-<version>-1.rockspec for the version in
# CMakeLists.txt, OUTDIR to the current directory. The working tree (the
# files git tracks or would track; without git, all but build dirs) becomes
# the archive the rockspec's source.url names, and `luarocks pack` puts it
# and the rockspec into <name>-<version>.src.rock, whose path is printed.
# `luarocks install` of that file then builds nothing but what is inside.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^project(gleam VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
spec=${1:-$root/rocks/gleam-$version-1.rockspec}
out=$(cd "${2:-.}" && pwd)
[ -f "$spec" ] || { echo "pack.sh: no rockspec $spec" >&2; exit 1; }
spec=$(cd "$(dirname "$spec")" && pwd)/$(basename "$spec")
name=$(basename "$spec" .rockspec)
archive=$(sed -n 's/^ *url = "\([^"]*\)",*$/\1/p' "$spec")
dir=$(sed -n 's/^ *dir = "\([^"]*\)",*$/\1/p' "$spec")
case "$archive" in
  */*|"") echo "pack.sh: $spec: source.url must be an archive name, got '$archive'" >&2; exit 1 ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
cd "$root"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # (not what LuaRocks leaves in a checkout: build.luarocks/ from
  # `luarocks make`, rocks packed here before)
  git ls-files -z --cached --others --exclude-standard | tr '\0' '\n' |
    while IFS= read -r f; do
      case "$f" in build.luarocks/*|*.rock) continue ;; esac
      if [ -e "$f" ]; then printf '%s\n' "$f"; fi
    done > "$tmp/files"
else
  find . -path ./.git -prune -o -path './build*' -prune -o -name '*.rock' -o -type f -print |
    sed 's,^\./,,' > "$tmp/files"
fi
tar -czf "$tmp/$archive" --owner=0 --group=0 --numeric-owner \
  --transform "s,^,$dir/,S" -T "$tmp/files"

# luarocks pack fetches source.url from its own temporary directory, so it
# is given the archive's absolute path; the rock then gets the rockspec as
# written (install finds the archive inside by its name).
mkdir "$tmp/pack" "$tmp/orig"
sed "s|^\( *url = \"\)$archive\"|\1file://$tmp/$archive\"|" "$spec" > "$tmp/pack/$name.rockspec"
cp "$spec" "$tmp/orig/$name.rockspec"
(cd "$tmp/pack" && luarocks pack "$name.rockspec" >/dev/null)
(cd "$tmp/orig" && zip -q "$tmp/pack/$name.src.rock" "$name.rockspec")
mv "$tmp/pack/$name.src.rock" "$out/"
echo "$out/$name.src.rock"
