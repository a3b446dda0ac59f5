#!/usr/bin/env bash
# Builds two OCI image archives from Debian's busybox-static, with no
# registry and no docker:
#   <out>/busybox.tar  one layer: /bin/busybox, its applet links, /etc files
#   <out>/httpd.tar    the same layer plus /www, serving it on port 8080
# Usage: scripts/build-images.sh [OUT_DIR]   (default: target/images)
# The archives are reproducible: same busybox, same bytes.
set -euo pipefail

out_dir="${1:-target/images}"
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"

if [ ! -x /bin/busybox ] || ! /bin/busybox --list >/dev/null 2>&1 || ldd /bin/busybox >/dev/null 2>&1; then
    # Missing, or a dynamically linked busybox: it would not run in an image
    # that holds nothing else.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >/dev/null
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
epoch="@0"

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# tar a directory reproducibly into a layer blob; echo its digest.
make_layer() {
    local src="$1" dest="$2"
    tar --sort=name --mtime="$epoch" --owner=0 --group=0 --numeric-owner \
        --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        -C "$src" -cf "$dest" .
}

# build_image NAME LAYOUT_DIR CONFIG_JSON_PROCESS LAYER_TAR...
build_image() {
    local name="$1" layout="$2" process="$3"; shift 3
    mkdir -p "$layout/blobs/sha256"
    local layers_json="" diff_ids=""
    for layer in "$@"; do
        local digest; digest="$(sha "$layer")"
        cp "$layer" "$layout/blobs/sha256/$digest"
        layers_json+="${layers_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$digest\",\"size\":$(size "$layer")}"
        diff_ids+="${diff_ids:+,}\"sha256:$digest\""
    done
    local config="$work/$name-config.json"
    printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":%s,"rootfs":{"type":"layers","diff_ids":[%s]}}' \
        "$process" "$diff_ids" >"$config"
    local config_digest; config_digest="$(sha "$config")"
    cp "$config" "$layout/blobs/sha256/$config_digest"
    local manifest="$work/$name-manifest.json"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
        "$config_digest" "$(size "$config")" "$layers_json" >"$manifest"
    local manifest_digest; manifest_digest="$(sha "$manifest")"
    cp "$manifest" "$layout/blobs/sha256/$manifest_digest"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s:latest"}}]}' \
        "$manifest_digest" "$(size "$manifest")" "$name" >"$layout/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
    tar --sort=name --mtime="$epoch" --owner=0 --group=0 --numeric-owner -C "$layout" -cf "$out_dir/$name.tar" .
    echo "$out_dir/$name.tar sha256:$manifest_digest"
}

# The busybox layer.
root="$work/rootfs"
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/proc" "$root/sys" "$root/dev"
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
make_layer "$root" "$work/busybox-layer.tar"

env_json='["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]'
build_image busybox "$work/busybox-layout" \
    "{\"Env\":$env_json,\"Cmd\":[\"/bin/sh\"],\"WorkingDir\":\"/\"}" \
    "$work/busybox-layer.tar"

# The httpd layer: a page, served by busybox httpd under a shell that exits
# on SIGTERM (httpd as PID 1 ignores it, and every stop would wait).
www="$work/www"
mkdir -p "$www/www"
printf 'hello from edgectl\n' >"$www/www/index.html"
make_layer "$www" "$work/httpd-layer.tar"
build_image httpd "$work/httpd-layout" \
    "{\"Env\":$env_json,\"Entrypoint\":[\"/bin/sh\",\"-c\",\"trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait\"],\"WorkingDir\":\"/www\",\"ExposedPorts\":{\"8080/tcp\":{}}}" \
    "$work/busybox-layer.tar" "$work/httpd-layer.tar"
