#!/bin/sh
# The metadata provider for a CD-ROM (or any block device) holding an ISO9660 image with a
# `config` file in its root. The image is read in user space (as upstream does with go-diskfs):
# no mount, so neither the isofs module nor CAP_SYS_ADMIN is needed.
#   ISO9660 (ECMA-119): 2048-byte sectors; the primary volume descriptor is sector 16:
#   byte 0 type (1), 1-5 "CD001"; the root directory record at byte 156. A directory record:
#   0 length, 2 extent LBA (u32 LE), 10 data length (u32 LE), 25 flags (bit 1: directory),
#   32 name length, 33 name ("CONFIG.;1": version and empty extension are dropped). Records
#   never cross a sector: a zero length byte means "go on at the next sector".
# The raw data goes to /run/config/userdata. JSON user data of the shape
#   {"NAME": {"perm": "0644", "content": "..."} | {"perm": "0755", "entries": {...}}, ...}
# becomes files and directories under /run/config (docs/metadata.md of upstream LinuxKit).
# Arguments: upstream's provider names (cdrom; others are ignored here) or device/image paths to
# read instead of every block device. METADATA_DIR replaces /run/config (for tests on a host).
CONFIG=${METADATA_DIR:-/run/config}
bb=/bin/busybox

say() { echo "metadata: $*"; }

# Decimal bytes, one per field, of `count` 2048-byte sectors of $1 from sector `skip`.
sectors() { $bb dd if="$1" bs=2048 skip="$2" count="$3" 2>/dev/null | $bb od -An -tu1 -v; }

LE='function le(o) { return b[o] + 256 * b[o + 1] + 65536 * b[o + 2] + 16777216 * b[o + 3] }
{ for (i = 1; i <= NF; i++) b[n++] = $i }'

# "LBA SIZE" of the root directory of the ISO9660 image on $1, or fail.
root_dir() {
  sectors "$1" 16 1 | $bb awk "$LE"'
END {
  if (n < 2048 || b[0] != 1 || b[1] != 67 || b[2] != 68 || b[3] != 48 || b[4] != 48 || b[5] != 49) exit 1
  print le(158), le(166)
}'
}

# "LBA SIZE" of the file CONFIG in the directory extent read from stdin (SIZE bytes), or fail.
find_config() {
  $bb awk -v size="$1" "$LE"'
END {
  o = 0
  while (o < size && o < n) {
    len = b[o]
    if (len == 0) { o = (int(o / 2048) + 1) * 2048; continue }
    nl = b[o + 32]; name = ""
    for (i = 0; i < nl; i++) name = name sprintf("%c", b[o + 33 + i])
    name = toupper(name); sub(/;[0-9]+$/, "", name); sub(/\.$/, "", name)
    if (name == "CONFIG" && int(b[o + 25] / 2) % 2 == 0) { print le(o + 2), le(o + 10); found = 1; exit }
    o += len
  }
  exit found ? 0 : 1
}'
}

# Copy the config file of the ISO on $1 to $2; fail if $1 holds none.
extract() {
  set -- "$1" "$2" $(root_dir "$1") || return 1
  [ -n "$4" ] || return 1
  loc=$(sectors "$1" "$3" $((($4 + 2047) / 2048)) | find_config "$4") || return 1
  set -- "$1" "$2" $loc
  $bb dd if="$1" bs=2048 skip="$3" count=$((($4 + 2047) / 2048)) 2>/dev/null | $bb head -c "$4" >"$2"
}

# The JSON entries of upstream's metadata format, parsed with a small recursive-descent parser.
JSON='
function fail(m) { print "metadata: userdata JSON: " m > "/dev/stderr"; bad = 1; exit 1 }
function ws() { while (pos <= len && index(" \t\r\n", substr(s, pos, 1))) pos++ }
function hexval(h,   i, v) { v = 0; for (i = 1; i <= 4; i++) v = v * 16 + index("0123456789abcdef", tolower(substr(h, i, 1))) - 1; return v }
function utf8(c) {
  if (c < 128) return sprintf("%c", c)
  if (c < 2048) return sprintf("%c%c", 192 + int(c / 64), 128 + c % 64)
  return sprintf("%c%c%c", 224 + int(c / 4096), 128 + int(c / 64) % 64, 128 + c % 64)
}
function str(   out, c, rest, i) {
  pos++; out = ""
  while (pos <= len) {
    rest = substr(s, pos); i = match(rest, /["\\]/)
    if (!i) break
    out = out substr(rest, 1, i - 1); pos += i - 1; c = substr(s, pos, 1)
    if (c == "\"") { pos++; return out }
    c = substr(s, ++pos, 1)
    if (c == "n") out = out "\n"; else if (c == "t") out = out "\t"; else if (c == "r") out = out "\r"
    else if (c == "b") out = out "\b"; else if (c == "f") out = out "\f"
    else if (c == "u") { out = out utf8(hexval(substr(s, pos + 1, 4))); pos += 4 }
    else out = out c
    pos++
  }
  fail("unterminated string")
}
function value(p,   c, k, i) {
  ws(); c = substr(s, pos, 1)
  if (c == "{") {
    typ[p] = "o"; nk[p] = 0; pos++; ws()
    if (substr(s, pos, 1) == "}") { pos++; return }
    while (1) {
      ws(); if (substr(s, pos, 1) != "\"") fail("expected a key at offset " pos)
      k = str(); ws(); if (substr(s, pos, 1) != ":") fail("expected : at offset " pos)
      pos++; key[p, ++nk[p]] = k; value(p SUBSEP k); ws()
      c = substr(s, pos++, 1); if (c == "}") return; if (c != ",") fail("expected , or } at offset " (pos - 1))
    }
  }
  if (c == "\"") { typ[p] = "s"; val[p] = str(); return }
  if (c == "[") {
    typ[p] = "a"; pos++; ws(); i = 0
    if (substr(s, pos, 1) == "]") { pos++; return }
    while (1) {
      value(p SUBSEP i++); ws()
      c = substr(s, pos++, 1); if (c == "]") return; if (c != ",") fail("expected , or ] at offset " (pos - 1))
    }
  }
  if (match(substr(s, pos), /^(true|false|null|-?[0-9][0-9.eE+-]*)/)) { typ[p] = "l"; pos += RLENGTH; return }
  fail("unexpected character at offset " pos)
}
function perm(e, dflt,   m) {
  if (!((e SUBSEP "perm") in typ)) return dflt
  m = val[e SUBSEP "perm"]
  if (typ[e SUBSEP "perm"] != "s" || m !~ /^0?[0-7][0-7][0-7][0-7]?$/) fail("bad perm " m)
  return m
}
function walk(dir, p,   i, k, e, f) {
  if (typ[p] != "o") fail("entries must be an object")
  for (i = 1; i <= nk[p]; i++) {
    k = key[p, i]; e = p SUBSEP k
    if (k == "" || k == "." || k == ".." || k ~ /[\/"\\$`]/ || k ~ /[\001-\037]/) fail("bad name " k)
    if (typ[e] != "o") fail(k " is not an object")
    f = dir "/" k
    if ((e SUBSEP "content") in typ) {
      if ((e SUBSEP "entries") in typ) fail(k " has both content and entries")
      if (typ[e SUBSEP "content"] != "s") fail(k ": content is not a string")
      printf "%s", val[e SUBSEP "content"] > f; close(f)
      system("/bin/busybox chmod " perm(e, "0644") " \"" f "\"")
      print "metadata: wrote " f
    } else if ((e SUBSEP "entries") in typ) {
      system("/bin/busybox mkdir -p \"" f "\" && /bin/busybox chmod " perm(e, "0755") " \"" f "\"")
      walk(f, e SUBSEP "entries")
    } else fail(k " has neither content nor entries")
  }
}
{ s = s $0 "\n" }
END {
  len = length(s); pos = 1
  value("")
  ws(); if (pos <= len) fail("trailing data at offset " pos)
  walk(dir, "")
}'

$bb mkdir -p "$CONFIG" || exit 1
devs=
for a; do case $a in /*) devs="$devs $a" ;; esac; done
if [ -z "$devs" ]; then
  for sys in /sys/block/*; do
    case ${sys##*/} in loop* | ram* | zram*) ;; *) devs="$devs /dev/${sys##*/}" ;; esac
  done
fi
found=
for dev in $devs; do
  [ -r "$dev" ] || continue
  if extract "$dev" "$CONFIG/userdata"; then
    found=$dev
    break
  fi
done
if [ -z "$found" ]; then
  $bb rm -f "$CONFIG/userdata"
  say "no metadata/userdata found"
  exit 0
fi
say "user data from $found in $CONFIG/userdata"
first=
read -r first <"$CONFIG/userdata"
case $first in
'{'*) $bb awk -v dir="$CONFIG" "$JSON" "$CONFIG/userdata" || say "userdata is not valid JSON of the entries shape" ;;
esac
exit 0
