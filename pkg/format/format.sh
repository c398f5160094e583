#!/bin/sh
# format [-type ext4] [-label LABEL] [-force] [DEVICE]: see build.yml.
type=ext4 label= force= dev=
while [ $# -gt 0 ]; do
  case $1 in
  -type | --type) type=$2; shift ;;
  -label | --label) label=$2; shift ;;
  -force | --force) force=1 ;;
  -*) echo "format: unknown option $1" >&2; exit 2 ;;
  *) dev=$1 ;;
  esac
  shift
done
[ "$type" = ext4 ] || { echo "format: type $type is not supported (only ext4)" >&2; exit 2; }

# Not blank: anything but zeros in the first 1 MiB (where every file system and partition
# table keeps its superblock or header). Debian's busybox has no blkid applet.
has_fs() { [ "$(head -c 1048576 "$1" | tr -d '\000' | wc -c)" -ne 0 ]; }

if [ -z "$dev" ]; then
  for d in /sys/block/*; do
    n=${d##*/}
    case $n in vd* | sd* | xvd* | nvme*n*) ;; *) continue ;; esac
    # A disk with partitions has NAMEp or NAME1 entries below it.
    parts=$(ls -d "$d/$n"* 2>/dev/null)
    [ -z "$parts" ] || continue
    if has_fs "/dev/$n" && [ -z "$force" ]; then
      echo "format: /dev/$n already has a file system, left alone"
      exit 0
    fi
    dev=/dev/$n
    break
  done
  [ -n "$dev" ] || { echo "format: no blank disk found" >&2; exit 1; }
elif has_fs "$dev" && [ -z "$force" ]; then
  echo "format: $dev already has a file system, left alone"
  exit 0
fi
echo "format: making an ext4 file system on $dev${label:+ labelled $label}"
exec mkfs.ext4 -q -F ${label:+-L "$label"} "$dev"
