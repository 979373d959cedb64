# Sourced by scripts/demo.sh and scripts/bench-upload.sh: a single-node Garage (the S3 server
# `scripts/setup.sh` installs) inside a network namespace, on its loopback (S3 API on
# 127.0.0.1:3900), with the bucket `recordings` and a key allowed on it, written to
# DIR/s3-key-id and DIR/s3-secret (0600) for [storage]'s `{ file = ... }`.

# garage_start NS DIR: starts it (data and log under DIR) and makes the layout, key and bucket.
garage_start() {
    local ns=$1 dir=$2 bin
    bin=$(command -v garage || echo "${CARGO_HOME:-$HOME/.cargo}/bin/garage")
    [ -x "$bin" ] || { echo "Garage is missing: run scripts/setup.sh (cargo install --locked garage)" >&2; return 1; }
    mkdir -p "$dir/garage"
    cat > "$dir/garage/garage.toml" <<GARAGE
metadata_dir = "$dir/garage/meta"
data_dir = "$dir/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:3901"
rpc_public_addr = "127.0.0.1:3901"
rpc_secret = "$(openssl rand -hex 32)"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:3900"
root_domain = ".s3.garage.localhost"
GARAGE
    ip netns exec "$ns" "$bin" -c "$dir/garage/garage.toml" server >"$dir/garage.log" 2>&1 &
    disown # killed with the namespace: no "Killed" job notice
    g() { ip netns exec "$ns" "$bin" -c "$dir/garage/garage.toml" "$@"; }
    for _ in $(seq 100); do g status >/dev/null 2>&1 && break; sleep 0.2; done
    g layout assign -z dc1 -c 1G "$(g node id -q | cut -d@ -f1)" >/dev/null
    g layout apply --version 1 >/dev/null
    local key
    key=$(g key create recorder)
    (umask 077
     echo "$key" | awk -F': *' '/Key ID/ {print $2}' >"$dir/s3-key-id"
     echo "$key" | awk -F': *' '/Secret key/ {print $2}' >"$dir/s3-secret")
    g bucket create recordings >/dev/null
    g bucket allow --read --write --owner recordings --key recorder >/dev/null
}

# garage_s3 NS DIR PATH [CURL ARGS...]: an S3 request to PATH (under the API's root, e.g.
# `recordings?list-type=2`), signed with DIR's key by curl.
garage_s3() {
    local ns=$1 dir=$2 path=$3
    shift 3
    # Garage wants the payload's hash header, which this curl does not send by itself.
    ip netns exec "$ns" curl -sS --aws-sigv4 "aws:amz:garage:s3" \
        --user "$(cat "$dir/s3-key-id"):$(cat "$dir/s3-secret")" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@" "http://127.0.0.1:3900/$path"
}

# storage_toml DIR: the [storage] table for this server.
storage_toml() {
    cat <<STORAGE
[storage]
endpoint = "http://127.0.0.1:3900"
region = "garage"
bucket = "recordings"
path_style = true
access_key_id = { file = "$1/s3-key-id" }
secret_access_key = { file = "$1/s3-secret" }
STORAGE
}
