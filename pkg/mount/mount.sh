#!/bin/sh
# mountie [-label LABEL | -device DEVICE] [-type TYPE] MOUNTPOINT: see build.yml.
label= dev= type= mnt=
while [ $# -gt 0 ]; do
  case $1 in
  -label | --label) label=$2; shift ;;
  -device | --device) dev=$2; shift ;;
  -type | --type) type=$2; shift ;;
  -*) echo "mount: unknown option $1" >&2; exit 2 ;;
  *) mnt=$1 ;;
  esac
  shift
done
[ -n "$mnt" ] || { echo "usage: mountie [-label LABEL | -device DEVICE] MOUNTPOINT" >&2; exit 2; }
# By label: busybox findfs (Debian's busybox has no blkid applet). Otherwise the first block
# device the kernel can mount.
mkdir -p "$mnt"
if [ -z "$dev" ] && [ -n "$label" ]; then
  dev=$(findfs "LABEL=$label" 2>/dev/null)
elif [ -z "$dev" ]; then
  for s in /sys/class/block/*; do
    d=/dev/${s##*/}
    [ -b "$d" ] || continue
    if mount ${type:+-t "$type"} "$d" "$mnt" 2>/dev/null; then
      echo "mount: $d on $mnt"
      exit 0
    fi
  done
fi
[ -n "$dev" ] || { echo "mount: no file system found${label:+ labelled $label}" >&2; exit 1; }
echo "mount: $dev on $mnt"
exec mount ${type:+-t "$type"} "$dev" "$mnt"
