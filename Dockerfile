# Container image of pgoutput-stream.
#
#   docker build -t pgoutput-stream .
#   docker run --rm pgoutput-stream --help
#   docker run --rm -e PGOUTPUT_STREAM_CONNECTION=... -e PGOUTPUT_STREAM_SLOT=... \
#       -e PGOUTPUT_STREAM_PUBLICATION=... pgoutput-stream
#
# Two stages: a Rust toolchain image builds a release binary, and a small
# Debian image runs it as an unprivileged user. The dependencies are compiled
# in their own layer (from Cargo.toml and Cargo.lock only), so editing the
# sources rebuilds the crate but not its ~200 dependencies.

ARG RUST_IMAGE=rust:1-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /build

# Dependencies first: a manifest with placeholder sources is enough to compile
# every dependency, and this layer stays cached until Cargo.toml or Cargo.lock
# change. The placeholder build artifacts of the crate itself are removed so
# that the real sources are always compiled below.
COPY Cargo.toml Cargo.lock ./
# The benchmark target named in Cargo.toml must exist for cargo to read the
# manifest; a placeholder stays for the real build too (benches are not built).
RUN mkdir src benches \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > benches/decode_encode.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin pgoutput-stream \
    && rm -rf src target/release/pgoutput-stream* \
        target/release/deps/pgoutput_stream-* target/release/deps/libpgoutput_stream-* \
        target/release/.fingerprint/pgoutput-stream-*

COPY src ./src
RUN cargo build --release --locked --bin pgoutput-stream \
    && strip target/release/pgoutput-stream

FROM ${RUNTIME_IMAGE} AS runtime
# ca-certificates: TLS to PostgreSQL (sslmode=verify-full) and NATS (tls://)
# can use the system roots. Package versions follow the pinned base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 pgoutput \
    && useradd --system --uid 10001 --gid pgoutput --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin pgoutput
COPY --from=builder /build/target/release/pgoutput-stream /usr/local/bin/pgoutput-stream
USER 10001:10001
# Logs are written without colours when stderr is not a terminal; events go to stdout.
ENV PGOUTPUT_STREAM_LOG_LEVEL=info
# The daemon exits cleanly (confirming what it has delivered) on SIGTERM.
STOPSIGNAL SIGTERM
# No CMD: the settings usually come from PGOUTPUT_STREAM_* variables, and
# arguments given to `docker run IMAGE ...` are passed to the daemon.
ENTRYPOINT ["/usr/local/bin/pgoutput-stream"]
