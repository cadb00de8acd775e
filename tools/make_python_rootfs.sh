#!/bin/sh
# make_python_rootfs.sh OUTDIR
#
# A root filesystem with Debian's Python and ipykernel, assembled from this machine's own
# installed Debian files (docs/IMAGES.md, "The Python image"): no archive or registry is
# asked. What goes in:
#   - every file dpkg lists for the Python packages of python3-ipykernel's dependency
#     closure (python3*, libpython3*: the interpreter, the standard library, ipykernel,
#     IPython, pyzmq, ...), with the byte-code Debian compiled for them at install time
#     (dpkg does not list it) and without docs and man pages;
#   - the kernelspec python3-ipykernel installs (/usr/share/jupyter/kernels/python3,
#     argv /usr/bin/python3 -m ipykernel_launcher), where execd looks for specs;
#   - the shared libraries those files need, as the loader resolves them (what ldd runs:
#     libc, libzmq, libssl, ...), and glibc's loader;
#   - a static busybox as /bin/sh and its applets in /bin, for commands and `!` lines;
#   - /etc/passwd and /etc/group (root, nobody), /root, /tmp (1777), /proc, /sys, /dev.
# The non-Python packages of the closure (gdb, dpkg, tar, tzdata, ...) stay out: nothing
# a kernel runs needs them. As root, the tree is checked by importing ipykernel in a
# chroot. Needs python3-ipykernel and busybox-static installed.
set -eu

out=$1
busybox=/bin/busybox
python=/usr/bin/python3
spec=/usr/share/jupyter/kernels/python3/kernel.json

fail() { echo "make_python_rootfs: $*" >&2; exit 1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

installed python3-ipykernel || fail "python3-ipykernel is not installed (apt-get install python3-ipykernel)"
# Debian's interpreter, not whatever python3 is first on PATH (pyenv, a venv).
dpkg -S "$(readlink -f "$python")" >/dev/null 2>&1 || fail "$python is not Debian's (dpkg -S knows no package for it)"
[ -f "$spec" ] || fail "no kernelspec at $spec"
if [ ! -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
  fail "a static $busybox is needed (Debian package busybox-static)"
fi

tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/root"
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root

# The Python packages python3-ipykernel needs, following Depends and Pre-Depends through
# Python packages only; of alternatives, the first one installed. One dpkg-query for all
# (each call reads dpkg's whole database).
dpkg-query -W -f='${Package}\t${Status}\t${Pre-Depends},${Depends}\n' > "$tmp/status"
packages=$(awk -F '\t' '
  $2 ~ / installed$/ { ok[$1] = 1; deps[$1] = $3 }
  END {
    todo[n++] = "python3-ipykernel"
    for (i = 0; i < n; i++) {
      p = todo[i]
      if (p in seen) continue
      seen[p] = 1
      print p
      d = deps[p]
      gsub(/\([^)]*\)|:any| /, "", d)
      groups = split(d, g, ",")
      for (j = 1; j <= groups; j++) {
        alts = split(g[j], a, "|")
        for (k = 1; k <= alts; k++) {
          if (a[k] !~ /^(lib)?python3/) continue
          if (a[k] in ok) { todo[n++] = a[k]; break }
        }
      }
    }
  }' "$tmp/status")

# Their files (not directories: tar would take a directory whole), and each module's
# cpython-3X.pyc where Debian compiled one.
pyc_tag=$("$python" -c 'import sys; print(sys.implementation.cache_tag)')
dpkg -L $packages | grep '^/' | sort -u |
  grep -v -e '^/usr/share/doc/' -e '^/usr/share/man/' -e '^/usr/share/lintian/' > "$tmp/listed"
while read -r f; do
  if [ -L "$f" ] || [ -f "$f" ]; then
    echo "$f"
    case $f in
      *.py)
        name=${f##*/}
        pyc="${f%/*}/__pycache__/${name%.py}.$pyc_tag.pyc"
        [ -f "$pyc" ] && echo "$pyc"
        ;;
    esac
  fi
done < "$tmp/listed" > "$tmp/files"

# Shared libraries: what the loader resolves for each ELF file among them (programs and
# shared objects by their names; it refuses anything else: scripts), as ldd would, but one
# loader run per file rather than ldd's shell script (ten times quicker). A "not found"
# fails.
loader=/lib64/ld-linux-x86-64.so.2
grep -E -e '/bin/[^/]*$' -e '\.so(\.[0-9.]*)?$' "$tmp/files" | while read -r f; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  echo "$f:"
  "$loader" --list "$f" 2>/dev/null || true
done | awk -v loader="$loader" '
  BEGIN { print loader }
  /^\// && /:$/ { f = $0 }
  /not found/ { print "make_python_rootfs: " f " " $1 " not found" > "/dev/stderr"; bad = 1 }
  $2 == "=>" && $3 ~ /^\// { print $3 }
  END { exit bad }' > "$tmp/libs.all" || exit 1
sort -u "$tmp/libs.all" > "$tmp/libs"

# Listed files keep their paths and symlinks (tar); libraries are copied whole to their
# canonical directory under their soname (this host has a merged /usr: /lib is usr/lib).
sed 's|^/||' "$tmp/files" | tar -C / --no-recursion -cf - -T - | tar -C "$root" -xf -
while read -r lib; do
  dir=$(readlink -f "$(dirname "$lib")")
  mkdir -p "$root$dir"
  [ -e "$root$dir/$(basename "$lib")" ] || cp -L "$lib" "$root$dir/$(basename "$lib")"
done < "$tmp/libs"
# Usual paths, as the host has them: the loader's /lib64/ld-linux-x86-64.so.2, libraries
# under /lib/x86_64-linux-gnu.
for d in lib lib64; do
  if [ -e "$root/$d" ] && [ ! -L "$root/$d" ]; then fail "/$d is a directory in the tree; expected a merged /usr"; fi
  mkdir -p "$root/usr/$d"
  ln -sfn "usr/$d" "$root/$d"
done

mkdir -p "$root/bin" "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/root" "$root/tmp"
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
cp "$busybox" "$root/bin/busybox"
# Some 400 links: one process, not one ln each.
"$python" -c '
import os, sys
for applet in sys.argv[2:]:
    link = os.path.join(sys.argv[1], applet)
    if not os.path.lexists(link):
        os.symlink("busybox", link)
' "$root/bin" $("$busybox" --list)
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"

[ -f "$root$spec" ] || fail "the kernelspec $spec did not make it into the tree"
if [ "$(id -u)" = 0 ]; then
  # The kernel's own imports, with nothing of the host's visible but a /proc of its own
  # (psutil reads /proc/stat on import).
  PYDEVD_DISABLE_FILE_VALIDATION=1 unshare --mount --pid --fork --mount-proc="$root/proc" \
    chroot "$root" /usr/bin/python3 -c 'import ipykernel.kernelapp, zmq' ||
    fail "ipykernel does not import in the tree"
fi

summary="$(echo $packages | wc -w) packages, $(wc -l < "$tmp/files") files, $(wc -l < "$tmp/libs") libraries"
rm -rf "$out"
mv "$root" "$out"
rm -rf "$tmp"
trap - EXIT
echo "make_python_rootfs: $(du -sh "$out" | cut -f1) in $out ($summary)"
