# raftka broker image.
#
# The usual way (needs a registry for rust:1-bookworm and debian:bookworm-slim):
#     docker build -t raftka:local .
#     docker run --rm -p 9092:9092 raftka:local          # one broker, localhost:9092
#     docker compose up -d                               # the three-broker cluster
#
# Offline (no registry; what scripts/docker-cluster does): make a Debian 12 base with
# debootstrap + `docker import`, build only the first stage on it, then add a binary built on
# the (Debian 12) host with docker/Dockerfile.prebuilt:
#     docker build --target runtime-base --build-arg RUNTIME_IMAGE=raftka-base:bookworm \
#         -t raftka-runtime-base:local .
#     docker build -f docker/Dockerfile.prebuilt -t raftka:local CONTEXT
#         # CONTEXT holds target/release/raftka; scripts/docker-cluster stages one in
#         # .run/docker/context (.dockerignore keeps target/ out of the usual build)
#
# `runtime-base` is the first stage on purpose: the legacy builder (no BuildKit, as on machines
# without buildx) builds every stage up to the target, so `--target runtime-base` never needs
# the Rust image. No RUN --mount here for the same reason (BuildKit only).

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- runtime-base: everything but the binary ------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime-base
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/raftka \
        --shell /usr/sbin/nologin raftka \
    && mkdir -p /var/lib/raftka /etc/raftka \
    && chown raftka:raftka /var/lib/raftka
COPY docker/raftka-healthcheck /usr/local/bin/raftka-healthcheck
COPY docker/server.properties /etc/raftka/server.properties
# 9092 Kafka (INTERNAL in compose), 19092 Kafka (EXTERNAL in compose), 9093 inter-broker gRPC
EXPOSE 9092 9093 19092
VOLUME ["/var/lib/raftka"]
WORKDIR /var/lib/raftka
USER raftka
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/raftka-healthcheck", "9092"]
ENTRYPOINT ["/usr/local/bin/raftka"]
CMD ["--config", "/etc/raftka/server.properties"]

# ---- builder: cargo build --release ---------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# Dependencies first, so that editing src/ does not rebuild them: a dummy main with the real
# manifest and lock file.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin raftka \
    && rm -rf src target/release/raftka target/release/deps/raftka-* target/release/.fingerprint/raftka-*
COPY src src
RUN cargo build --release --locked --bin raftka \
    && strip target/release/raftka \
    && target/release/raftka --help >/dev/null

# ---- runtime (default target): slim Debian + the binary -------------------------------------
FROM runtime-base AS runtime
COPY --from=builder /src/target/release/raftka /usr/local/bin/raftka
