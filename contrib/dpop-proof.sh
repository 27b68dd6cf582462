#!/bin/sh
# Prints a DPoP proof (RFC 9449) for one request, made with nothing but openssl (3.x).
#
#   contrib/dpop-proof.sh KEY.pem METHOD URL [ACCESS_TOKEN]
#
# KEY.pem is an Ed25519 private key (`openssl genpkey -algorithm ed25519 -out KEY.pem`);
# keep using the same key for one token: the token is bound to it. URL is the URL the
# request goes to (query and fragment are ignored by the server). With ACCESS_TOKEN the
# proof carries its hash (`ath`), as a call to an API needs; without it the proof is for
# the token endpoint. Every proof has a fresh `jti` and is accepted once, for 60 seconds.
set -eu
[ $# -ge 3 ] || { echo "usage: $0 KEY.pem METHOD URL [ACCESS_TOKEN]" >&2; exit 2; }
key=$1 method=$2 url=$3 token=${4:-}

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# The raw public key is the last 32 bytes of the DER SubjectPublicKeyInfo.
x=$(openssl pkey -in "$key" -pubout -outform DER | tail -c 32 | b64url)
header=$(printf '{"typ":"dpop+jwt","alg":"EdDSA","jwk":{"kty":"OKP","crv":"Ed25519","x":"%s"}}' "$x" | b64url)
ath=""
if [ -n "$token" ]; then
  ath=$(printf ',"ath":"%s"' "$(printf %s "$token" | openssl dgst -sha256 -binary | b64url)")
fi
claims=$(printf '{"jti":"%s","htm":"%s","htu":"%s","iat":%s%s}' \
  "$(openssl rand -hex 16)" "$method" "$url" "$(date +%s)" "$ath" | b64url)

input=$(mktemp)
trap 'rm -f "$input"' EXIT
printf '%s.%s' "$header" "$claims" > "$input"
signature=$(openssl pkeyutl -sign -rawin -inkey "$key" -in "$input" | b64url)
printf '%s.%s.%s\n' "$header" "$claims" "$signature"
