#!/usr/bin/env bash
# Side-by-side benchmark: the same image (bench/recipes/packages.txt, Ubuntu noble, GPT,
# BIOS GRUB, serial console) built by clawimg, vmdb2, debos and diskimage-builder,
# alternating the tools A B C D A B C D. Per tool and run: cold build (empty caches),
# second build (the tool's own cache warm), rebuild after one config file changed, raw and
# `qemu-img convert -c` qcow2 sizes, installed packages, and TCG boot time to `login:` on
# the serial console. Prints a markdown table of medians with clawimg's ratios.
#
# Usage (as root, from the repository, after `bash bench/setup.sh`):
#   bash bench/peers.sh [--runs N] [--tools clawimg,vmdb2,debos,dib] [--work DIR]
#                       [--mirror URL] [--no-boot] [--phases cold,second,change]
#                       [--table-only DIR] [--clawimg-bin PATH]
# --clawimg-bin measures a given clawimg binary (e.g. an older build, for a before/after
# comparison) instead of building the repository's.
# Without --mirror every tool uses its own default archive (debootstrap's default for the
# tools that need one spelled out); with it, all four use the same mirror.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
runs=3
tools=clawimg,vmdb2,debos,dib
work=/var/tmp/clawimg-peers
mirror=${BENCH_MIRROR:-}
boot=1
phases=cold,second,change
table_only=
clawimg_bin=
while [ $# -gt 0 ]; do
  case "$1" in
  --runs) runs=$2; shift 2 ;;
  --tools) tools=$2; shift 2 ;;
  --work) work=$2; shift 2 ;;
  --mirror) mirror=$2; shift 2 ;;
  --no-boot) boot=0; shift ;;
  --phases) phases=$2; shift 2 ;;
  --table-only) table_only=$2; shift 2 ;;
  --clawimg-bin) clawimg_bin=$(realpath "$2"); shift 2 ;;
  *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
table() { python3 "$repo/bench/table.py" "$1"; }
if [ -n "$table_only" ]; then table "$table_only"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "run as root (loop devices, chroots)" >&2; exit 2; }
venv=$work/dib-venv
for t in vmdb2 debos mmdebstrap debootstrap qemu-img qemu-system-x86_64 debugfs; do
  command -v "$t" >/dev/null || { echo "$t missing: run bash bench/setup.sh" >&2; exit 2; }
done
[ -x "$venv/bin/disk-image-create" ] || { echo "diskimage-builder missing: bash bench/setup.sh $venv" >&2; exit 2; }

run_dir=$work/run-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$run_dir"
res=$run_dir/results.tsv
: > "$res"
log() { echo "[$(date -u +%T)] $*" | tee -a "$run_dir/log.txt" >&2; }
# Stand-ins for udevadm/kpartx (no udev daemon, no device-mapper here) come first.
export PATH=$repo/bench/bin:$venv/bin:$PATH
keyring=$repo/profiles/keyrings/ubuntu-archive-keyring.gpg
default_mirror=$(awk '/\*\)/ {f=1} f && /default_mirror/ {print $2; exit}' /usr/share/debootstrap/scripts/gutsy)
peer_mirror=${mirror:-$default_mirror}
pkgs_comma=$(grep -v '^#' "$repo/bench/recipes/packages.txt" | paste -sd,)

# The clawimg binary is copied so that rebuilding target/ during a long run changes nothing.
if [ -z "$clawimg_bin" ]; then
  (cd "$repo" && cargo build --release -q)
  clawimg_bin=$repo/target/release/clawimg
fi
cp "$clawimg_bin" "$run_dir/clawimg-bin"

{
  echo "date	$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine	$(nproc) vCPUs, $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(. /etc/os-release; echo "$PRETTY_NAME"), Linux $(uname -r)"
  echo "clawimg	$("$run_dir/clawimg-bin" --version | awk '{print $2}') ($([ "$clawimg_bin" = "$repo/target/release/clawimg" ] && git -C "$repo" rev-parse --short HEAD || echo "binary $clawimg_bin"))"
  echo "vmdb2	$(dpkg-query -W -f='${Version}' vmdb2)"
  echo "debos	$(dpkg-query -W -f='${Version}' debos)"
  echo "dib	$("$venv/bin/pip" show diskimage-builder 2>/dev/null | awk '/^Version/ {print $2}')"
  echo "helpers	mmdebstrap $(mmdebstrap --version | awk '{print $2}'), debootstrap $(dpkg-query -W -f='${Version}' debootstrap), $(qemu-img --version | head -1)"
  echo "mirror	$([ -n "$mirror" ] && echo "same override for all tools" || echo "each tool's default Ubuntu archive")"
} > "$run_dir/meta.tsv"

now() { date +%s.%N; }
# Record one figure: RUN TOOL METRIC VALUE (also load and other QEMU processes at the time).
rec() {
  local others
  others=$(pgrep -c -f '^qemu-system' || true)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$(cut -d' ' -f1 /proc/loadavg)" "$others" >> "$res"
  table "$run_dir" > "$run_dir/table.md" || true
}

# Build once with TOOL into DIR/out; the image path is printed on stdout.
build() {
  local tool=$1 d=$2
  rm -rf "$d/out" && mkdir -p "$d/out"
  case "$tool" in
  clawimg)
    "$run_dir/clawimg-bin" build "$d/src/profiles/peer.toml" --out "$d/out" --cache-dir "$d/cache" \
      -q --timings ${mirror:+--mirror "$mirror"} > "$d/build.log" 2>&1 || return 1
    echo "$d/out/peer/peer.raw" ;;
  vmdb2)
    sed -e "s|@MIRROR@|$peer_mirror|" -e "s|@KEYRING@|$keyring|" \
      -e "s|@PACKAGES@|${pkgs_comma//,/, }|" -e "s|@CONF@|$d/conf/clawimg-bench.conf|" \
      "$repo/bench/recipes/vmdb2.yaml" > "$d/vmdb2.yaml"
    mkdir -p "$d/cache"
    (cd "$d/out" && vmdb2 --output "$d/out/vmdb2.raw" --rootfs-tarball "$d/cache/rootfs.tar.gz" \
      --log "$d/build.log" "$d/vmdb2.yaml" > "$d/build.out" 2>&1) || return 1
    echo "$d/out/vmdb2.raw" ;;
  debos)
    mkdir -p "$d/cache"
    (cd "$d/out" && debos --disable-fakemachine --artifactdir "$d/out" \
      -t mirror:"$peer_mirror" -t keyring:"$keyring" -t packages:"${pkgs_comma//,/, }" \
      -t conf:"$d/conf/clawimg-bench.conf" -t image:debos.raw \
      "$d/debos.yaml" > "$d/build.log" 2>&1) || return 1
    echo "$d/out/debos.raw" ;;
  dib)
    mkdir -p "$d/cache"
    (cd "$d/out" && DIB_RELEASE=noble DIB_DEBIAN_COMPONENTS=main,universe DIB_DEBOOTSTRAP_CACHE=1 DIB_IMAGE_CACHE=$d/cache \
      DIB_MMDEBSTRAP_EXTRA_ARGS="--keyring=$keyring" \
      ELEMENTS_PATH=$repo/bench/recipes/dib-elements BENCH_CONF=$d/conf/clawimg-bench.conf \
      DIB_BOOTLOADER_DEFAULT_CMDLINE="console=ttyS0,115200n8" \
      ${mirror:+DIB_DISTRIBUTION_MIRROR=$mirror} \
      disk-image-create -a amd64 -t raw -o "$d/out/dib" --image-size 4 \
      ubuntu-minimal vm block-device-gpt bench-conf -p "$pkgs_comma,grub-pc" > "$d/build.log" 2>&1) || return 1
    echo "$d/out/dib.raw" ;;
  esac
}

# Installed packages of the root filesystem in RAW (debugfs at each partition's offset,
# nothing attached or mounted).
packages() {
  local raw=$1 start n
  for start in $(partx -g -o START "$raw"); do
    n=$(debugfs -R 'cat /var/lib/dpkg/status' "$raw?offset=$((start * 512))" 2>/dev/null \
      | grep -c '^Status: install ok installed' || true)
    if [ "${n:-0}" -gt 0 ]; then echo "$n"; return; fi
  done
  echo 0
}

# TCG boot of RAW (snapshot, nothing written); seconds until `login:` on the serial console.
boot_time() {
  local raw=$1 log=$2 s pid t=
  s=$(now)
  qemu-system-x86_64 -machine q35 -accel tcg -m 2048 -smp 1 -display none -no-reboot \
    -drive file="$raw",format=raw,if=virtio,snapshot=on -nic none \
    -serial file:"$log" -monitor none > /dev/null 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if grep -q 'login:' "$log" 2>/dev/null; then
      t=$(awk -v e="$(now)" -v s="$s" 'BEGIN {printf "%.1f", e - s}')
      break
    fi
    if awk -v e="$(now)" -v s="$s" 'BEGIN {exit !(e - s > 600)}'; then break; fi
    sleep 0.5
  done
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  echo "${t:-timeout}"
}

one() {
  local r=$1 tool=$2 d=$run_dir/$tool s raw secs
  rm -rf "$d"; mkdir -p "$d/conf" "$d/tmp"
  echo "# run $r build 1" > "$d/conf/clawimg-bench.conf"
  if [ "$tool" = clawimg ]; then
    mkdir -p "$d/src"
    cp -r "$repo/bench/profiles" "$repo/bench/overlays" "$d/src/"
    ln -s "$repo/profiles/keyrings" "$d/src/profiles/keyrings"
    sed -i "s|^extends = .*|extends = \"$repo/profiles/base.toml\"|" "$d/src/profiles/peer.toml"
  fi
  [ "$tool" = debos ] && cp "$repo/bench/recipes/debos.yaml" "$repo/bench/recipes/debos-grub.sh" "$d/"
  for phase in ${phases//,/ }; do
    if [ "$phase" = change ]; then echo "# run $r build 3: changed" > "$d/conf/clawimg-bench.conf"; fi
    # clawimg's overlay holds a copy (a symlink in an overlay is copied into the image as a
    # symlink, so its target's content would be neither in the image nor in the input hash).
    [ "$tool" = clawimg ] && cp "$d/conf/clawimg-bench.conf" "$d/src/overlays/peerbench/etc/clawimg-bench.conf"
    log "run $r $tool $phase"
    s=$(now)
    if ! raw=$(build "$tool" "$d"); then
      log "run $r $tool $phase FAILED (see $d/build.log)"; rec "$r" "$tool" "${phase}_failed" 1; return 0
    fi
    secs=$(awk -v e="$(now)" -v s="$s" 'BEGIN {printf "%.1f", e - s}')
    rec "$r" "$tool" "$phase" "$secs"
    log "run $r $tool $phase: ${secs}s"
    [ "$tool" = clawimg ] && cp "$d/build.log" "$d/build-$phase.log"
  done
  rec "$r" "$tool" raw_mib "$(stat -c %s "$raw" | awk '{printf "%.0f", $1 / 1048576}')"
  rec "$r" "$tool" alloc_mib "$(du -k "$raw" | awk '{printf "%.0f", $1 / 1024}')"
  qemu-img convert -c -O qcow2 "$raw" "$d/image.qcow2"
  rec "$r" "$tool" qcow2_mib "$(stat -c %s "$d/image.qcow2" | awk '{printf "%.1f", $1 / 1048576}')"
  rm -f "$d/image.qcow2"
  rec "$r" "$tool" packages "$(packages "$raw")"
  if [ "$boot" = 1 ]; then
    secs=$(boot_time "$raw" "$d/serial-$r.log")
    rec "$r" "$tool" login "$secs"
    log "run $r $tool login: ${secs}s"
  fi
  # Keep logs, drop the big files.
  rm -rf "$d/out" "$d/cache" "$d/tmp"
}

log "work dir $run_dir, tools $tools, runs $runs"
IFS=, read -r -a list <<< "$tools"
for r in $(seq "$runs"); do
  for tool in "${list[@]}"; do one "$r" "$tool"; done
done
table "$run_dir" | tee "$run_dir/table.md"
log "done: $run_dir/table.md"
