# Sourced by the CPU bench scripts: reads ./bench's table by column name, so that a new column (as `prec`
# was) cannot shift what they read.
#   ./bench ... | bench_columns ROW COL1,COL2    prints the named columns of the first row whose name is ROW
bench_columns() {
  awk -v row="$1" -v want="$2" 'BEGIN { n = split(want, w, ",") }
    $1 == "what" { for (i = 1; i <= NF; ++i) at[$i] = i; next }
    $1 == row { s = ""; for (k = 1; k <= n; ++k) s = s (k > 1 ? " " : "") $(at[w[k]]); print s; exit }'
}
