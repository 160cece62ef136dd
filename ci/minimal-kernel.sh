#!/usr/bin/env bash
# Build (or reuse) the minimal-configuration kernel: Debian's linux-source-6.12 configured with
# tinyconfig + ci/pkeys-minimal.config (boot and protection keys only, none of the optional
# features the cases use). Prints the bzImage's path. The image is cached in .cache/kbuild/ under
# the source version and a hash of the fragment, so a second call costs nothing. The cache is
# $PKEYS_CACHE when set (as for pkeys-qemu), else .cache/ in the checkout.
#
#   IMG=$(bash ci/minimal-kernel.sh)
#   cargo run -q -p pkeys-qemu -- run --kernel "$IMG" --name minimal-6.12
#
# Needs the kernel build tools: gcc make flex bison bc perl xz-utils libelf-dev libssl-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(cargo run -q -p pkeys-qemu -- kernel source 6.12)
HASH=$(sha256sum ci/pkeys-minimal.config | cut -c1-12)
KEY="$(basename "$SRC" | sed 's/^linux-source-//')-$HASH"
CACHE=${PKEYS_CACHE:-$PWD/.cache}
mkdir -p "$CACHE/kbuild"
IMG="$CACHE/kbuild/minimal-$KEY.bzImage"
if [ ! -f "$IMG" ]; then
    BUILD="$CACHE/kbuild/minimal-build"
    cargo run -q -p pkeys-qemu -- kernel build --source "$SRC" --out "$BUILD" \
        --config ci/pkeys-minimal.config >&2
    cp "$BUILD/arch/x86/boot/bzImage" "$IMG.tmp"
    mv "$IMG.tmp" "$IMG"
    # Older images of other sources or fragments are not needed any more.
    find "$CACHE/kbuild" -maxdepth 1 -name 'minimal-*.bzImage' ! -name "$(basename "$IMG")" -delete
fi
echo "$IMG"
