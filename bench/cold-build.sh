#!/usr/bin/env bash
# Cold build of a profile vs. the bare mmdebstrap step with the same package set,
# alternating A B A B; prints per-run figures and medians. Usage (as root, from the repo):
#   bash bench/cold-build.sh [PROFILE] [RUNS]
set -euo pipefail
profile=${1:-base}
runs=${2:-3}
bin=./target/release/clawimg
cargo build --release -q
tmp=$(mktemp -d /var/tmp/clawimg-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pkgs=$(python3 - "$profile" <<'PY'
import sys, tomllib, os
def load(name):
    d = tomllib.load(open(f"profiles/{name}.toml", "rb"))
    if "extends" in d:
        base = load(d["extends"]); pk = base.get("base", {}).get("packages", [])
        for p in d.get("base", {}).get("packages", []):
            if p.startswith("!"): pk = [x for x in pk if x != p[1:]]
            elif p not in pk: pk.append(p)
        base.setdefault("base", {})["packages"] = pk
        return base
    return d
print(",".join(load(sys.argv[1])["base"]["packages"]))
PY
)
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tools: $(mmdebstrap --version), $(mke2fs -V 2>&1 | head -1), $(qemu-img --version | head -1)"
for i in $(seq "$runs"); do
  s=$(date +%s.%N)
  mmdebstrap -q --mode=root --format=directory --variant=required --components=main,universe \
    --keyring=profiles/keyrings/ubuntu-archive-keyring.gpg --include="$pkgs" noble "$tmp/mm$i" >/dev/null 2>&1
  e=$(date +%s.%N); rm -rf "$tmp/mm$i"
  awk -v e="$e" -v s="$s" 'BEGIN {printf "%.1f\n", e - s}' >> "$tmp/mm.txt"
  s=$(date +%s.%N)
  "$bin" build "$profile" --out "$tmp/out$i" --cache-dir "$tmp/cache$i" -q > "$tmp/build$i.txt"
  e=$(date +%s.%N)
  awk -v e="$e" -v s="$s" 'BEGIN {printf "%.1f\n", e - s}' >> "$tmp/build.txt"
  grep -E '^\s+(base|customize|scrub|assemble|outputs)\s' "$tmp/build$i.txt" | awk '{print $1, $2}' >> "$tmp/stages.txt"
  sizes=$(grep -E '\.(raw|qcow2) ' "$tmp/build$i.txt" | awk '{print $1"="$2"MiB"}' | tr '\n' ' ')
  echo "run $i: mmdebstrap $(tail -1 "$tmp/mm.txt")s, clawimg build $(tail -1 "$tmp/build.txt")s, $sizes"
  rm -rf "$tmp/out$i" "$tmp/cache$i"
done
echo "median mmdebstrap alone: $(median < "$tmp/mm.txt")s"
echo "median clawimg build:    $(median < "$tmp/build.txt")s"
for st in base customize scrub assemble outputs; do
  echo "median stage $st: $(awk -v s=$st '$1==s {sub("s","",$2); print $2}' "$tmp/stages.txt" | median)s"
done
