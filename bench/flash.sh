#!/usr/bin/env bash
# Flash throughput over SSH on loopback: `clawimg flash` (block map ranges, zstd on the wire,
# remote read-back check) vs. plain `dd | ssh | dd` of the full raw image vs.
# `zstd | ssh | zstd -d | dd`, alternating A B C; prints per-run figures and medians.
# The "rescue system" is a real sshd on 127.0.0.1 with a config and keys made here.
# Usage (as root, from the repo): bash bench/flash.sh [IMAGE.raw] [RUNS]
# Without IMAGE, profile `test` is built into a temp dir first.
set -euo pipefail
runs=${2:-3}
bin=$PWD/target/release/clawimg
cargo build --release -q
tmp=$(mktemp -d /var/tmp/clawimg-flashbench.XXXXXX)
sshd_pid=
cleanup() { [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
if [ -n "${1:-}" ]; then
  img=$(readlink -f "$1")
else
  "$bin" build test --out "$tmp/out" --cache-dir "$tmp/cache" -q >/dev/null
  img=$tmp/out/test/test.raw
fi
bytes=$(stat -c %s "$img")

# The rescue system.
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$tmp/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$tmp/client_key"
cp "$tmp/client_key.pub" "$tmp/authorized_keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$tmp/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $tmp/host_key
AuthorizedKeysFile $tmp/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $tmp/sshd.pid
EOF
/usr/sbin/sshd -D -e -f "$tmp/sshd_config" 2>/dev/null &
sshd_pid=$!
opts="-F /dev/null -i $tmp/client_key -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
# shellcheck disable=SC2086
rsh() { ssh $opts -p "$port" root@127.0.0.1 "$@"; }

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
fresh() { rm -f "$tmp/target.img"; truncate -s "$bytes" "$tmp/target.img"; sync; }
timed() { # NAME COMMAND...: wall seconds into $tmp/NAME.txt
  local name=$1 s e; shift
  fresh
  s=$(date +%s.%N); "$@"; e=$(date +%s.%N)
  awk -v e="$e" -v s="$s" 'BEGIN {printf "%.2f\n", e - s}' >>"$tmp/$name.txt"
}
do_flash() {
  CLAWIMG_SSH_OPTS="$opts" "$bin" flash "$img" -q \
    --to "ssh://root@127.0.0.1:$port$tmp/target.img" >"$tmp/flash.out"
}
do_dd() {
  dd if="$img" bs=4M status=none | rsh "dd of=$tmp/target.img bs=4M conv=notrunc,fsync status=none"
}
do_zstd() {
  zstd -q -c "$img" | rsh "zstd -dcq | dd of=$tmp/target.img bs=4M conv=notrunc,fsync status=none"
}

echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tools: $(ssh -V 2>&1), $(zstd --version)"
mapped=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mapped_bytes"])' "${img%.raw}.bmap.json" 2>/dev/null || echo 0)
zbytes=$(zstd -q -c "$img" | wc -c)
echo "image: $img, $((bytes >> 20)) MiB apparent, $((mapped >> 20)) MiB mapped, $((zbytes >> 20)) MiB as one zstd -3 stream"
for i in $(seq "$runs"); do
  timed flash do_flash
  wire=$(awk '/on the wire/ {print $4}' "$tmp/flash.out")
  wt=$(awk '/^flashed/ {for (i = 1; i < NF; i++) if ($i == "in") print $(i + 1)}' "$tmp/flash.out")
  echo "${wt%s}" >>"$tmp/write.txt"
  timed dd do_dd
  timed zstd do_zstd
  echo "run $i: clawimg flash $(tail -1 "$tmp/flash.txt")s (write ${wt}, wire ${wire} MiB, then read-back), dd|ssh|dd $(tail -1 "$tmp/dd.txt")s, zstd|ssh|zstd -d|dd $(tail -1 "$tmp/zstd.txt")s"
done
f=$(median <"$tmp/flash.txt"); d=$(median <"$tmp/dd.txt"); z=$(median <"$tmp/zstd.txt")
mib=$((bytes >> 20))
echo "median clawimg flash:        ${f}s  ($(awk -v b=$mib -v t="$f" 'BEGIN {printf "%.0f", b / t}') MiB/s of image)"
echo "median of its write phase:   $(median <"$tmp/write.txt")s (the rest: preflight and remote read-back + sha256)"
echo "median dd | ssh | dd:        ${d}s  ($(awk -v b=$mib -v t="$d" 'BEGIN {printf "%.0f", b / t}') MiB/s)"
echo "median zstd | ssh | zstd -d: ${z}s  ($(awk -v b=$mib -v t="$z" 'BEGIN {printf "%.0f", b / t}') MiB/s)"
echo "ratios: dd/flash $(awk -v a="$d" -v b="$f" 'BEGIN {printf "%.2f", a / b}'), zstd/flash $(awk -v a="$z" -v b="$f" 'BEGIN {printf "%.2f", a / b}')"
