#!/usr/bin/env bash
# check-style.sh: the line-length rule of the C++/CUDA sources (the ColumnLimit of .clang-format), for CI.
#
#   scripts/check-style.sh                    fail (exit 1) listing FILE:LINE of every line over the limit in
#                                             a file that has more such lines than scripts/style-baseline.txt allows
#   scripts/check-style.sh --all              list every line over the limit, allowed or not (exit 0)
#   scripts/check-style.sh --update-baseline  rewrite the baseline from the tree as it is now
#
# Files: the tracked *.cpp, *.h, *.cu, *.cuh (every file under the repo root when git is not there). Lines
# are measured in characters (UTF-8 continuation bytes are not counted), as clang-format counts columns.
#
# The baseline lists the files that were over the limit when the rule was introduced, with how many lines;
# a listed file may keep at most that many long lines, every other file none. So no new long line gets in,
# and the old ones go as their files are edited: after fixing some, run --update-baseline and commit it.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=120
baseline=scripts/style-baseline.txt
mode=${1:-check}
case "$mode" in
  check|--all|--update-baseline) ;;
  *) echo "check-style.sh: unknown argument '$mode' (expected nothing, --all or --update-baseline)" >&2; exit 2 ;;
esac

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  files=$(git ls-files '*.cpp' '*.h' '*.cu' '*.cuh')
else
  files=$(find . -type f \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) -not -path './build*' | sed 's|^\./||' | sort)
fi

# Every long line as "FILE:LINE: N columns".
long_lines() {
  [ -z "$files" ] && return 0
  # shellcheck disable=SC2086
  LC_ALL=C awk -v limit="$limit" '
    { s = $0; gsub(/[\200-\277]/, "", s); n = length(s)
      if (n > limit) printf "%s:%d: %d columns\n", FILENAME, FNR, n }' $files
}

report=$(long_lines)

if [ "$mode" = "--update-baseline" ]; then
  {
    echo "# Files over the ${limit}-column limit and how many lines each may keep (scripts/check-style.sh)."
    echo "# Shrink it: fix lines, then run scripts/check-style.sh --update-baseline. Never add to it by hand."
    [ -n "$report" ] && printf '%s\n' "$report" | cut -d: -f1 | sort | uniq -c | awk '{ print $1, $2 }'
  } > "$baseline"
  echo "wrote $baseline: $(grep -vc '^#' "$baseline" || true) files, $(printf '%s' "$report" | grep -c . || true) lines"
  exit 0
fi

if [ "$mode" = "--all" ]; then
  [ -n "$report" ] && printf '%s\n' "$report"
  echo "$(printf '%s' "$report" | grep -c . || true) lines over $limit columns"
  exit 0
fi

# check: compare each file's count with its allowance.
declare -A allowed=()
if [ -f "$baseline" ]; then
  while read -r count path; do
    case "$count" in ''|'#'*) continue ;; esac
    allowed[$path]=$count
  done < "$baseline"
fi
declare -A have=()
if [ -n "$report" ]; then
  while IFS=: read -r path _; do have[$path]=$(( ${have[$path]:-0} + 1 )); done <<< "$report"
fi

bad=0
for path in "${!have[@]}"; do
  if [ "${have[$path]}" -gt "${allowed[$path]:-0}" ]; then
    bad=$((bad + 1))
    echo "$path: ${have[$path]} lines over $limit columns (allowed: ${allowed[$path]:-0}):"
    printf '%s\n' "$report" | awk -F: -v p="$path" '$1 == p { print "  " $0 }'
  fi
done
shrunk=0
for path in "${!allowed[@]}"; do
  [ "${have[$path]:-0}" -lt "${allowed[$path]}" ] && shrunk=$((shrunk + 1))
done

if [ "$bad" -gt 0 ]; then
  echo "check-style: $bad file(s) with new lines over $limit columns; shorten them (clang-format uses .clang-format)" >&2
  exit 1
fi
echo "check-style: no new lines over $limit columns ($(printf '%s' "$report" | grep -c . || true) old ones allowed by $baseline)"
[ "$shrunk" -gt 0 ] && echo "check-style: $shrunk file(s) now have fewer long lines than allowed: run $0 --update-baseline"
exit 0
