#!/bin/bash
# The quickstart: a dev daemon with a keyfile, one secret stored and read back,
# status through its life (not initialized, unsealed, sealed), whoami.
. "$(dirname "$0")/lib.sh"

start_daemon || { echo "Bail out! cofferd did not start"; exit 1; }

ok_out "status before init says not initialized" '^Initialized: +no' "$COFFER" status
ok_out "status --json before init" '"initialized":false' "$COFFER" status --json
fails_with "get before init is refused: not initialized (exit 4)" 4 'not initialized.*coffer operator init' \
    "$COFFER" get hf/token

ok "operator init --keyfile creates the keyfile and initializes" \
    "$COFFER" operator init --keyfile "$T/unseal.key"
is "the keyfile holds 32 bytes, mode 0400" "$(stat -c '%s %a' "$T/unseal.key" 2>&1)" "32 400"
ok_out "status after init: initialized and unsealed with keyfile" '"initialized":true,"sealed":false,"method":"keyfile"' \
    "$COFFER" status --json
ok_out "status text after init shows the data-key term" '^Data-key term: +1' "$COFFER" status

printf 'hf_s3cret-value\n' >"$T/value"
fails_with "put hf/token from stdin reports the version" 0 'stored hf/token version 1' \
    sh -c '"$1" put hf/token <"$2"' _ "$COFFER" "$T/value"
ok "get hf/token returns the exact bytes (trailing newline kept)" \
    sh -c '"$1" get hf/token >"$2.out" && cmp "$2" "$2.out"' _ "$COFFER" "$T/value"
ok_out "get --json carries the value as base64" \
    "\"value_base64\":\"$(base64 -w0 <"$T/value")\"" "$COFFER" get hf/token --json
ok_out "ls lists it" '^hf/token$' "$COFFER" ls

ok_out "whoami shows my uid" "uid $(id -u), gid $(id -g)" "$COFFER" whoami
ok_out "whoami --json: exe is the coffer CLI" '"exe":"[^"]*/(lt-)?coffer"' "$COFFER" whoami --json

stop_daemon
start_daemon || { echo "Bail out! cofferd did not restart"; exit 1; }
ok_out "after a restart the store is sealed" '"initialized":true,"sealed":true' "$COFFER" status --json
ok_out "status text says how to unseal" '^Sealed: +yes \(run `coffer operator unseal`\)' "$COFFER" status
fails_with "get while sealed: sealed: run \`coffer operator unseal\` (exit 4)" 4 \
    'sealed: run `coffer operator unseal`' "$COFFER" get hf/token
ok_out "operator unseal --keyfile unseals" '^unsealed$' "$COFFER" operator unseal --keyfile "$T/unseal.key"
ok "after unseal the value reads back unchanged" \
    sh -c '"$1" get hf/token >"$2.out" && cmp "$2" "$2.out"' _ "$COFFER" "$T/value"

fails_with "an unknown command is a usage error (exit 2)" 2 "unknown command 'frobnicate'" "$COFFER" frobnicate
fails_with "a missing argument is a usage error (exit 2)" 2 'usage: coffer get NAME' "$COFFER" get

done_testing
