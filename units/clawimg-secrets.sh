#!/bin/bash
# Shipped by clawimg: first boot of a node. Reads the secrets bundle from the seed partition
# (clawimg seal) and from cloud-init NoCloud / config-drive user data, installs each slot of
# /usr/lib/clawimg/secrets.slots with its owner and mode (a console password slot through
# chpasswd -e), generates missing `generate` slots,
# names the node, then zeroes the seed partition. Values only ever pass through files under
# /run and shell builtins: never argv, never the journal.
set -euo pipefail
umask 077
export LC_ALL=C

SLOTS=/usr/lib/clawimg/secrets.slots
STATE=/var/lib/clawimg
SEED=/dev/disk/by-partlabel/clawimg-seed
MAGIC='#clawimg-secrets v1'

log() { echo "clawimg-secrets: $*"; }
die() { echo "clawimg-secrets: $*" >&2; exit 1; }

work=$(mktemp -d /run/clawimg-secrets.XXXXXX)
export TMPDIR=$work
cleanup() {
    if mountpoint -q "$work/ud" 2>/dev/null; then umount "$work/ud" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/v" "$work/ud"

declare -A val=()
node=""
seed_used=0

# read_bundle FILE SOURCE: the first source that names a slot (or the node) wins.
read_bundle() {
    local f=$1 src=$2 first="" line k
    IFS= read -r first <"$f" || true
    [ "$first" = "$MAGIC" ] || return 1
    if ! grep -qx '#end' "$f"; then
        log "$src: bundle is truncated (no #end line); ignored"
        return 1
    fi
    while IFS= read -r line; do
        case $line in
            node=*) [ -n "$node" ] || node=${line#node=} ;;
            slot.*=*)
                k=${line%%=*}
                k=${k#slot.}
                [ -n "${val[$k]+x}" ] || val[$k]=${line#*=}
                ;;
        esac
    done <"$f"
    log "$src: bundle read"
}

# 1. The seed partition (zeros when the image was not sealed).
if [ -b "$SEED" ]; then
    tr -d '\000' <"$SEED" >"$work/seed"
    if [ -s "$work/seed" ]; then
        seed_used=1
        read_bundle "$work/seed" "seed partition" || log "seed partition: no clawimg bundle"
    else
        log "seed partition is empty"
    fi
else
    log "no seed partition ($SEED)"
fi

# 2. User data: NoCloud (volume label CIDATA) or config drive (label config-2).
udevadm settle --timeout=15 || true
n=0
for label in CIDATA cidata config-2 CONFIG-2; do
    for dev in $(blkid -c /dev/null -o device -t "LABEL=$label" 2>/dev/null || true); do
        mount -o ro,nosuid,nodev,noexec "$dev" "$work/ud" 2>/dev/null || { log "cannot mount $dev ($label)"; continue; }
        for f in user-data openstack/latest/user_data; do
            if [ -f "$work/ud/$f" ]; then
                n=$((n + 1))
                cp "$work/ud/$f" "$work/userdata.$n"
                read_bundle "$work/userdata.$n" "user data $dev:$f" || log "user data $dev:$f: not a clawimg bundle"
            fi
        done
        umount "$work/ud"
    done
done

# gen SPEC: a fresh random value on stdout.
gen() {
    local kind=${1%%:*} len=${1#*:}
    case $kind in
        hex) od -An -vtx1 -N"$len" /dev/urandom | tr -d ' \n' ;;
        base64) head -c "$len" /dev/urandom | base64 -w0 ;;
        alnum) (set +o pipefail; tr -dc 'A-Za-z0-9' </dev/urandom | head -c "$len") ;;
        uuid) tr -d '\n' </proc/sys/kernel/random/uuid ;;
        *) die "unknown generate recipe $1" ;;
    esac
}

installed() { # FILE KEY: the slot already holds a value (an earlier, interrupted run).
    if [ "$2" = "-" ]; then [ -s "$1" ]; else [ -f "$1" ] && grep -q "^$2=." "$1"; fi
}

# 3. Decide each slot's value before touching anything.
missing=()
todo=()
while IFS='|' read -r name file key owner group mode kind apply; do
    case $name in '' | '#'*) continue ;; esac
    if [ -n "${val[$name]+x}" ]; then
        base64 -d >"$work/v/$name" <<<"${val[$name]}" || die "slot $name: value is not valid base64"
        todo+=("$name|$file|$key|$owner|$group|$mode|supplied|${apply:--}")
    elif [ "${apply:--}" != - ]; then
        # A console password nobody supplied: the account stays locked.
        [ "$kind" = required ] && missing+=("$name") || log "slot $name: not supplied: ${apply#passwd:} keeps a locked password (no console login)"
    elif installed "$file" "$key"; then
        log "slot $name: already installed"
    elif [ "$kind" = required ]; then
        missing+=("$name")
    elif [ "$kind" = optional ]; then
        log "slot $name: optional, not supplied"
    else
        gen "$kind" >"$work/v/$name"
        todo+=("$name|$file|$key|$owner|$group|$mode|generated|-")
    fi
done <"$SLOTS"

if [ ${#missing[@]} -gt 0 ]; then
    die "missing required secret slots: ${missing[*]} (seal the node with them or pass them as user data); units that need them will not start"
fi

# envline FILE: `KEY=value`, single-quoted when the value has characters a shell or
# docker compose would read differently.
quote() {
    local v
    v=$(cat "$1")
    case $v in *\'* | *$'\n'*) return 1 ;; esac
    if [[ $v =~ ^[A-Za-z0-9_./:+=@,%-]*$ ]]; then printf '%s' "$v"; else printf "'%s'" "$v"; fi
}

# 4. Install: write a temporary file next to the destination, set owner and mode, rename.
for entry in "${todo[@]}"; do
    IFS='|' read -r name file key owner group mode how apply <<<"$entry"
    if [ "$apply" != - ]; then
        # Console recovery: the value is a crypt(5) hash; chpasswd reads it from stdin.
        user=${apply#passwd:}
        id "$user" >/dev/null 2>&1 || die "slot $name: no user $user on this node"
        h=$(cat "$work/v/$name")
        [[ $h =~ ^\$(y|gy|7|6|5|2[aby])\$[A-Za-z0-9./=,\$-]+$ ]] || die "slot $name: not a crypt(5) hash (make one with mkpasswd -m yescrypt)"
        printf '%s:%s\n' "$user" "$h" | chpasswd -e || die "slot $name: chpasswd failed for $user"
        unset h
        log "slot $name: console password of $user set (SSH stays key-only)"
        continue
    fi
    dir=$(dirname "$file")
    (umask 022 && mkdir -p "$dir")
    tmp=$(mktemp "$dir/.clawimg-secret.XXXXXX")
    if [ "$key" = "-" ]; then
        cat "$work/v/$name" >"$tmp"
    else
        if [ -f "$file" ]; then grep -v "^$key=" "$file" >"$tmp" || true; fi
        line=$(quote "$work/v/$name") || { rm -f "$tmp"; die "slot $name: value for $key must be one line without single quotes"; }
        printf '%s=%s\n' "$key" "$line" >>"$tmp"
        unset line
    fi
    chown "$owner:$group" "$tmp" || { rm -f "$tmp"; die "slot $name: cannot chown $owner:$group"; }
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$file"
    dest=$file
    [ "$key" = "-" ] || dest="$file $key"
    log "slot $name: $how -> $dest ($owner:$group $mode)"
done
sync

# 5. Node name.
if [ -n "$node" ]; then
    [[ $node =~ ^[A-Za-z0-9][A-Za-z0-9-]{0,62}$ ]] || die "node name in the bundle is not a host name"
    printf '%s\n' "$node" >/etc/hostname
    chmod 0644 /etc/hostname
    sed -i "s/^127\.0\.1\.1[[:space:]].*/127.0.1.1 $node/" /etc/hosts
    hostname "$node"
    log "node name: $node"
fi

# 6. Wipe the seed: zero every byte of the partition, not just forget it.
if [ "$seed_used" = 1 ]; then
    size=$(blockdev --getsize64 "$SEED")
    dd if=/dev/zero of="$SEED" bs=4096 count=$((size / 4096)) conv=fsync status=none
    blockdev --flushbufs "$SEED" || true
    log "seed partition zeroed ($size bytes)"
fi

mkdir -p "$STATE"
chmod 0755 "$STATE"
date -u +%Y-%m-%dT%H:%M:%SZ >"$STATE/secrets.done"
sync
log "done"
