#!/bin/sh
# Power the system off cleanly after $1 seconds (default 0: at once, as an onboot container).
# pid 1 is LinuxKit's busybox init (this container shares the host pid namespace): SIGUSR2
# asks it to run its shutdown action (onshutdown containers, services stopped, disks
# unmounted) and then power off. Only if that signal cannot be sent, power off directly.
[ "${1:-0}" = 0 ] || /bin/busybox sleep "$1"
kill -USR2 1 || /bin/busybox poweroff -f
