#!/bin/bash
# Print the Debian kernel release to build for and boot: the newest one of the
# series in $1 (default 6.1) that has both /boot/vmlinuz-<rel> and its headers.
# An exact release (say 6.1.0-56-amd64) is printed back if it is installed.
set -euo pipefail
want=${1:-6.1}
best=
for img in /boot/vmlinuz-*; do
	[ -e "$img" ] || continue
	rel=${img#/boot/vmlinuz-}
	case $rel in
	"$want" | "$want".*-amd64 | "$want"+*-amd64) ;;
	*) continue ;;
	esac
	[ -d "/usr/src/linux-headers-$rel" ] || continue
	best=$(printf '%s\n%s\n' "$best" "$rel" | sed '/^$/d' | sort -V | tail -n 1)
done
if [ -z "$best" ]; then
	echo "kver: no kernel $want with headers in /boot and /usr/src (run kbuild/setup-host.sh)" >&2
	exit 1
fi
echo "$best"
