#!/bin/sh
# Checks, from inside a container, that init and runc isolated it as the config says, and
# prints one line ending in "suite PASSED" or "suite FAILED: <reason>".
# TEST_CAPS (env): the capabilities this container was given, as names separated by spaces
# or commas, or "all"; empty means none (LinuxKit grants none unless asked). When it is not
# set at all the capabilities are not checked: only the YAML knows what it granted. Only shell builtins are used, so
# the checks hold even in an image without applet links.

fail() {
  echo "linuxkit test suite FAILED: $*"
  exit 1
}

# Kernel capability numbers (linux/capability.h).
cap_bit() {
  case $1 in
  CAP_CHOWN) b=0 ;; CAP_DAC_OVERRIDE) b=1 ;; CAP_DAC_READ_SEARCH) b=2 ;; CAP_FOWNER) b=3 ;;
  CAP_FSETID) b=4 ;; CAP_KILL) b=5 ;; CAP_SETGID) b=6 ;; CAP_SETUID) b=7 ;; CAP_SETPCAP) b=8 ;;
  CAP_LINUX_IMMUTABLE) b=9 ;; CAP_NET_BIND_SERVICE) b=10 ;; CAP_NET_BROADCAST) b=11 ;;
  CAP_NET_ADMIN) b=12 ;; CAP_NET_RAW) b=13 ;; CAP_IPC_LOCK) b=14 ;; CAP_IPC_OWNER) b=15 ;;
  CAP_SYS_MODULE) b=16 ;; CAP_SYS_RAWIO) b=17 ;; CAP_SYS_CHROOT) b=18 ;; CAP_SYS_PTRACE) b=19 ;;
  CAP_SYS_PACCT) b=20 ;; CAP_SYS_ADMIN) b=21 ;; CAP_SYS_BOOT) b=22 ;; CAP_SYS_NICE) b=23 ;;
  CAP_SYS_RESOURCE) b=24 ;; CAP_SYS_TIME) b=25 ;; CAP_SYS_TTY_CONFIG) b=26 ;; CAP_MKNOD) b=27 ;;
  CAP_LEASE) b=28 ;; CAP_AUDIT_WRITE) b=29 ;; CAP_AUDIT_CONTROL) b=30 ;; CAP_SETFCAP) b=31 ;;
  CAP_MAC_OVERRIDE) b=32 ;; CAP_MAC_ADMIN) b=33 ;; CAP_SYSLOG) b=34 ;; CAP_WAKE_ALARM) b=35 ;;
  CAP_BLOCK_SUSPEND) b=36 ;; CAP_AUDIT_READ) b=37 ;; CAP_PERFMON) b=38 ;; CAP_BPF) b=39 ;;
  CAP_CHECKPOINT_RESTORE) b=40 ;;
  *) fail "unknown capability $1 in TEST_CAPS" ;;
  esac
}

# 1. Own pid namespace: the entrypoint is pid 1 there.
[ "$$" = 1 ] || fail "pid is $$, not 1: not in its own pid namespace"

# 2. proc, sys and cgroup2 mounted where runc's config puts them, and the host's root hidden.
proc=
sys=
cg=
while read -r _ _ _ _ mnt _ rest; do
  fstype=${rest#*- }
  fstype=${fstype%% *}
  case $mnt in
  /proc) [ "$fstype" = proc ] && proc=1 ;;
  /sys) [ "$fstype" = sysfs ] && sys=1 ;;
  /sys/fs/cgroup) cg=$fstype ;;
  esac
done </proc/self/mountinfo
[ -n "$proc" ] || fail "no proc at /proc"
[ -n "$sys" ] || fail "no sysfs at /sys"
[ "$cg" = cgroup2 ] || fail "/sys/fs/cgroup is ${cg:-not mounted}, not cgroup2"
[ -r /sys/fs/cgroup/cgroup.controllers ] || fail "/sys/fs/cgroup has no cgroup.controllers"

# 3. Own mount namespace: the system's root (with /containers and init's files) is not ours.
[ -e /containers ] && fail "sees /containers: shares the host's root"
[ -e /etc/inittab ] && [ -e /newroot ] && fail "sees init's root: shares the host's mount namespace"

# 4. Effective capabilities are the ones given (when the YAML tells us which).
[ -n "${TEST_CAPS+set}" ] || {
  echo "linuxkit test suite PASSED"
  exit 0
}
caps=$TEST_CAPS
want=0
if [ "$caps" = all ] || [ "$caps" = ALL ]; then
  want=-1
else
  oldifs=$IFS
  IFS=', '
  # shellcheck disable=SC2086 # split the list on spaces and commas
  set -- $caps
  IFS=$oldifs
  for c; do
    cap_bit "$c"
    want=$((want | (1 << b)))
  done
fi
have=
while read -r k v; do [ "$k" = CapEff: ] && have=$v; done </proc/self/status
[ -n "$have" ] || fail "no CapEff in /proc/self/status"
have=$((0x$have))
if [ "$want" = -1 ]; then
  # "all" is every capability this kernel knows: CapBnd of the container is at most that.
  bnd=
  while read -r k v; do [ "$k" = CapBnd: ] && bnd=$v; done </proc/self/status
  [ "$have" = "$((0x$bnd))" ] || fail "CapEff $(printf %016x "$have") is not all capabilities"
else
  [ "$have" = "$want" ] || fail "CapEff is $(printf %016x "$have"), expected $(printf %016x "$want")"
fi

echo "linuxkit test suite PASSED"
