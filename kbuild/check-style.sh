#!/bin/bash
# The style gates of `make check` for the C, with the kernel's own tools
# (extracted from linux-source-6.1 by kbuild/get-kernel-tools.sh):
#
#   checkpatch.pl --strict   driver/, driver/uapi/, samples/ and examples/: no ERROR,
#                            WARNING or CHECK that is not an exception
#   kernel-doc               driver/, samples/ and the UAPI header: no warning (-v, the
#                            6.1 script's strict mode; also -Wall with a newer
#                            script when a 6.12 kbuild is installed), every
#                            non-static function and every UAPI struct documented
#   clang-format             driver/ and samples/: the kernel's .clang-format, unchanged;
#                            every "clang-format off" region an exception
#
# Exceptions, each with its reason: kbuild/checkpatch-exceptions.txt.  An
# exception that excuses nothing is an error too, so the file stays true.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 2
"$top/kbuild/get-kernel-tools.sh" || exit 2
tools=$top/build/tools/linux-6.1
exceptions=kbuild/checkpatch-exceptions.txt
fail=0

c_files=(driver/*.c driver/*.h driver/uapi/*.h samples/*.c)
checkpatch_files=("${c_files[@]}" examples/*.c)
doc_files=(driver/*.c driver/*.h driver/uapi/flaxdev.h samples/*.c)

ex_tool=() ex_file=() ex_type=() ex_re=() ex_used=()
while read -r tool file type re reason; do
	case $tool in '' | '#'*) continue ;; esac
	if [ -z "$reason" ]; then
		echo "$exceptions: no reason given: $tool $file $type $re"
		fail=1
	fi
	ex_tool+=("$tool") ex_file+=("$file") ex_type+=("$type") ex_re+=("$re") ex_used+=(0)
done <"$exceptions"

# excused TOOL FILE TYPE SOURCE-LINE: is there an exception for it?
excused() {
	local i
	for i in "${!ex_tool[@]}"; do
		# shellcheck disable=SC2053 # the file field is a glob
		if [ "${ex_tool[$i]}" = "$1" ] && [[ $2 == ${ex_file[$i]} ]] &&
			[ "${ex_type[$i]}" = "$3" ] && [[ $4 =~ ${ex_re[$i]} ]]; then
			ex_used[i]=1
			return 0
		fi
	done
	return 1
}

# --- checkpatch.pl --strict
declare -A level_count=([ERROR]=0 [WARNING]=0 [CHECK]=0)
excused_count=0
cp_out=$(perl "$tools/scripts/checkpatch.pl" --strict --no-tree --terse --show-types \
	--no-summary -f "${checkpatch_files[@]}" 2>&1)
cp_rc=$?
if [ $cp_rc -gt 1 ]; then # 1: something was reported
	echo "checkpatch: failed to run (exit $cp_rc)"
	fail=1
fi
while IFS= read -r msg; do
	[ -n "$msg" ] || continue
	if [[ $msg =~ ^([^:]+):([0-9]+):\ (ERROR|WARNING|CHECK):([A-Z0-9_]+): ]]; then
		f=${BASH_REMATCH[1]} line=${BASH_REMATCH[2]}
		level=${BASH_REMATCH[3]} type=${BASH_REMATCH[4]}
		src=$(sed -n "${line}p" "$f")
		if excused checkpatch "$f" "$type" "$src"; then
			excused_count=$((excused_count + 1))
			continue
		fi
		level_count[$level]=$((level_count[$level] + 1))
		printf 'checkpatch: %s\n    %s\n' "$msg" "$src"
	else
		printf 'checkpatch: %s\n' "$msg"
		level_count[ERROR]=$((level_count[ERROR] + 1))
	fi
done <<<"$cp_out"
echo "checkpatch --strict: ${#checkpatch_files[@]} files, ${level_count[ERROR]} errors," \
	"${level_count[WARNING]} warnings, ${level_count[CHECK]} checks" \
	"($excused_count reports excused by $exceptions)"
[ $((level_count[ERROR] + level_count[WARNING] + level_count[CHECK])) = 0 ] || fail=1

# --- kernel-doc
kdoc_out=$(perl "$tools/scripts/kernel-doc" -none -v "${doc_files[@]}" 2>&1)
problems=$(grep -v ': info: Scanning doc for ' <<<"$kdoc_out")
newer=$(printf '%s\n' /usr/lib/linux-kbuild-6.12*/scripts/kernel-doc | sort -V | tail -n 1)
[ -f "$newer" ] || newer=
if [ -n "$newer" ]; then
	problems+=$'\n'$(perl "$newer" -none -Wall "${doc_files[@]}" 2>&1)
fi
documented=$(sed -n 's/.*: info: Scanning doc for [a-z]* \([A-Za-z0-9_]*\).*/\1/p' <<<"$kdoc_out" | sort -u)
# Non-static functions defined in driver/*.c, and the UAPI structs.
wanted=$(
	grep -hE '^[a-z_][a-z0-9_ *]*[ *]flax_[a-z0-9_]+\(' driver/*.c | grep -v '^static' |
		sed -E 's/^[^(]*[ *](flax_[a-z0-9_]+)\(.*/\1/'
	sed -nE 's/^struct (flax_[a-z0-9_]+) \{.*/\1/p' driver/uapi/flaxdev.h
)
for name in $wanted; do
	grep -qx "$name" <<<"$documented" || problems+=$'\n'"kernel-doc: $name has no kernel-doc comment"
done
problems=$(sed '/^$/d' <<<"$problems")
if [ -n "$problems" ]; then
	echo "$problems"
	fail=1
fi
echo "kernel-doc (6.1 -v${newer:+, ${newer#/usr/lib/} -Wall}): ${#doc_files[@]} files, $(wc -w <<<"$wanted") functions and UAPI structs" \
	"to document, $(grep -c . <<<"$problems") problems"

# --- clang-format with the kernel's .clang-format
cf_out=$(clang-format --style="file:$tools/.clang-format" --dry-run --Werror "${c_files[@]}" 2>&1)
cf_rc=$?
[ -z "$cf_out" ] || echo "$cf_out" | head -n 60
[ $cf_rc = 0 ] || fail=1
fences=0
while IFS=: read -r f line _; do
	[ -n "$f" ] || continue
	fences=$((fences + 1))
	src=$(sed -n "$((line + 1))p" "$f")
	if ! excused clang-format "$f" off "$src"; then
		echo "clang-format: $f:$line: a 'clang-format off' region not listed in $exceptions"
		fail=1
	fi
done < <(grep -n 'clang-format off' "${c_files[@]}")
echo "clang-format (kernel .clang-format, $(clang-format --version | sed 's/.*version //')):" \
	"${#c_files[@]} files, $(grep -c 'clang-format-violations' <<<"$cf_out") differences," \
	"$fences off regions"

for i in "${!ex_tool[@]}"; do
	if [ "${ex_used[$i]}" = 0 ]; then
		echo "$exceptions: unused exception: ${ex_tool[$i]} ${ex_file[$i]} ${ex_type[$i]} ${ex_re[$i]}"
		fail=1
	fi
done
exit $fail
